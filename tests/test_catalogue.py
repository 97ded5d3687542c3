"""`sciml._catalogue` names what the package offers once; these tests check it against the
implementations it names and against what the config schema and the command line offer."""

import inspect

import pytest

from sciml import _catalogue as catalogue
from sciml._app import cli
from sciml._app.config import PINN_SCHEMA, SCHEMA


def _default(function, name):
    return inspect.signature(function).parameters[name].default


@pytest.mark.parametrize("name", list(catalogue.RECIPES))
def test_recipe_entries_match_their_functions(name):
    recipe = catalogue.RECIPES[name]
    assert recipe.name == name
    describe = catalogue.resolve(recipe.describer)
    keywords = {
        p.name
        for p in inspect.signature(describe).parameters.values()
        if p.kind is p.KEYWORD_ONLY and p.name != "dtype"
    }
    assert set(recipe.options) <= keywords  # (a solver may take more, e.g. `scheme`)
    assert set(recipe.options) <= set(catalogue.RECIPE_OPTIONS)
    # The describer names the recipe; the generator's default chunk is the catalogue's.
    assert (
        describe(
            64 if name != "darcy" else 85,
            **({"record_steps": 10} if name == "navier_stokes" else {}),
        )["recipe"]
        == name
    )
    generate = catalogue.resolve(recipe.generator)
    if "chunk_size" not in inspect.signature(generate).parameters:  # a wrapper: the solver's
        generate = {"darcy": "sciml.data:generate_darcy"}[name]
        generate = catalogue.resolve(generate)
    assert _default(generate, "chunk_size") == recipe.chunk_size
    solve, floats = recipe.generation_cost(recipe.chunk_size, 64, {})
    assert solve >= 64 and floats > 0
    assert recipe.grid in ("nodes", "periodic")


def test_recipe_cost_reads_the_generators_defaults():
    from sciml.data._recipes import burgers as _burgers
    from sciml.data._recipes import darcy as _recipes
    from sciml.data._recipes import navier_stokes as _navier_stokes

    assert (
        catalogue.get_recipe("darcy").generation_cost(1, 85, {})[0]
        == (_recipes.darcy_resolutions(85)[0])
    )
    assert catalogue.get_recipe("burgers").generation_cost(1, 64, {})[0] == _default(
        _burgers.burgers_recipe_info, "solve_resolution"
    )
    generate = _navier_stokes.generate_navier_stokes
    assert catalogue.get_recipe("navier_stokes").generation_cost(1, 64, {})[0] == _default(
        generate, "solve_resolution"
    )
    assert catalogue.get_recipe("navier_stokes").channels() == (
        1,
        _default(generate, "record_steps"),
    )


def test_pinn_benchmarks_match_the_problems():
    from sciml.pinn import benchmarks

    assert list(catalogue.PINN_BENCHMARKS) == list(benchmarks.BENCHMARKS)
    cheap = {"nonlinear_diffusion": {"resolution": 2}, "allen_cahn": {"resolution": 4}}
    for name, entry in catalogue.PINN_BENCHMARKS.items():
        factory = benchmarks.BENCHMARKS[name]
        if entry.reference is not None:
            assert (_default(factory, "resolution"), _default(factory, "num_times")) == (
                entry.reference
            )
            problem = factory(**cheap[name], num_times=2)
        else:
            assert "resolution" not in inspect.signature(factory).parameters
            problem = factory()
        assert tuple(problem.terms) == entry.terms, name
        assert problem.domain.dim == entry.dims, name
        assert (problem.exact is None) == (entry.reference is not None), name


def test_activations_resolve_to_functions():
    import jax.numpy as jnp

    for table in (catalogue.OPERATOR_ACTIVATIONS, catalogue.FIELD_ACTIVATIONS):
        for name, reference in table.items():
            function = catalogue.resolve(reference)
            assert callable(function)
            assert function(jnp.zeros(())).shape == (), name


def test_optimizers_resolve_to_optax_factories():
    import optax

    for name, reference in catalogue.OPTIMIZERS.items():
        factory = catalogue.resolve(reference)
        assert next(iter(inspect.signature(factory).parameters)) == "learning_rate", name
        assert isinstance(factory(1e-3), optax.GradientTransformation), name
    pinn_only = tuple(catalogue.PINN_OPTIMIZERS)
    assert SCHEMA["train"]["optimizer"].choices == tuple(catalogue.OPTIMIZERS)
    # PINN configs also take "lbfgs": no first-order phase, every iteration L-BFGS.
    choices = (*catalogue.OPTIMIZERS, *pinn_only, "lbfgs")
    assert PINN_SCHEMA["train"]["optimizer"].choices == choices
    for schema in (SCHEMA, PINN_SCHEMA):
        assert schema["train"]["optimizer"].default == "adam"
    for reference in catalogue.PINN_OPTIMIZERS.values():
        assert callable(catalogue.resolve(reference)().step)


def test_policies_are_the_trainers():
    from sciml.train import _lifecycle

    assert tuple(catalogue.NONFINITE_POLICIES) == tuple(_lifecycle.POLICIES)
    for key, value in catalogue.ROLLBACK_DEFAULTS.items():
        assert SCHEMA["train"][key].default == value
    defaults = catalogue.ROLLBACK_DEFAULTS
    assert _lifecycle.nonfinite_options("rollback", None, None) == (
        "rollback",
        defaults["rollback_lr_factor"],
        defaults["max_rollbacks"],
    )


def test_schema_and_command_line_are_built_from_the_catalogue():
    assert SCHEMA["data"]["recipe"].choices == tuple(catalogue.RECIPES)
    assert set(catalogue.RECIPE_OPTIONS) <= set(SCHEMA["data"])
    assert SCHEMA["model"]["activation"].choices == tuple(catalogue.OPERATOR_ACTIVATIONS)
    assert PINN_SCHEMA["problem"]["name"].choices == tuple(catalogue.PINN_BENCHMARKS)
    assert PINN_SCHEMA["model"]["mlp"]["activation"].choices == tuple(catalogue.FIELD_ACTIVATIONS)
    assert SCHEMA["train"]["on_nonfinite"].choices == tuple(catalogue.NONFINITE_POLICIES)
    parser = cli._parser()
    data = next(
        action
        for action in parser._subparsers._group_actions[0].choices["data"]._actions
        if action.dest == "recipe"
    )
    assert list(data.choices) == [*catalogue.RECIPES, "import"]
    flags = {
        action.dest for action in parser._subparsers._group_actions[0].choices["data"]._actions
    }
    assert set(catalogue.RECIPE_OPTIONS) <= flags


def test_an_unknown_recipe_names_the_allowed_ones():
    with pytest.raises(ValueError, match="recipe 'x' is unknown; allowed: darcy, burgers"):
        catalogue.get_recipe("x")
