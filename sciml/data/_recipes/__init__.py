"""The dataset recipes of `sciml.data`, one module per recipe holding everything of it (its
constants, argument checks, sampler, chunked generator, description and cost), and
`make_dataset`, which writes any recipe listed in `sciml._catalogue` to a file. Their public
names are re-exported from `sciml.data`."""
