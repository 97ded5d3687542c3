"""Data: Gaussian random fields, differentiable PDE solvers, the papers' dataset recipes, and the
on-disk dataset format."""

from ._deeponet_data import DeepONetData as DeepONetData
from ._deeponet_data import to_deeponet as to_deeponet
from ._grf import grf as grf
from ._io import Dataset as Dataset
from ._io import DatasetError as DatasetError
from ._io import OnDiskArray as OnDiskArray
from ._io import load_dataset as load_dataset
from ._io import open_dataset as open_dataset
from ._io import write_dataset as write_dataset
from ._recipes.antiderivative import antiderivative_recipe_info as antiderivative_recipe_info
from ._recipes.antiderivative import antiderivative_recipe_sample as antiderivative_recipe_sample
from ._recipes.antiderivative import generate_antiderivative as generate_antiderivative
from ._recipes.antiderivative import sample_gp_antiderivative as sample_gp_antiderivative
from ._recipes.burgers import burgers_recipe_info as burgers_recipe_info
from ._recipes.burgers import burgers_recipe_sample as burgers_recipe_sample
from ._recipes.burgers import generate_burgers as generate_burgers
from ._recipes.darcy import darcy_recipe_info as darcy_recipe_info
from ._recipes.darcy import darcy_recipe_sample as darcy_recipe_sample
from ._recipes.darcy import generate_darcy as generate_darcy
from ._recipes.generate import make_dataset as make_dataset
from ._recipes.navier_stokes import generate_navier_stokes as generate_navier_stokes
from ._recipes.navier_stokes import navier_stokes_recipe_info as navier_stokes_recipe_info
from ._recipes.navier_stokes import navier_stokes_recipe_sample as navier_stokes_recipe_sample
from ._recipes.navier_stokes import navier_stokes_resolutions as navier_stokes_resolutions
from ._solvers.allen_cahn import allen_cahn_reference as allen_cahn_reference
from ._solvers.allen_cahn import allen_cahn_solve as allen_cahn_solve
from ._solvers.burgers import burgers_solve as burgers_solve
from ._solvers.darcy import darcy_solve as darcy_solve
from ._solvers.etdrk4 import ETDRK4 as ETDRK4
from ._solvers.navier_stokes import navier_stokes_solve as navier_stokes_solve
from ._solvers.porous import nonlinear_diffusion_reference as nonlinear_diffusion_reference
from ._solvers.porous import nonlinear_diffusion_solve as nonlinear_diffusion_solve
