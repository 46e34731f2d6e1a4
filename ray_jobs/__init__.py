"""Ray jobs, one module per job: `python -m ray_jobs.<job> --config configs/<job>/<name>.yaml [key=value ...]`.
Thin: read the config, build the Ray Data or Ray Train graph from `gliner/` and `synth/` pieces, run, summarise."""
