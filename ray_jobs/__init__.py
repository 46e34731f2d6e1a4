"""Ray jobs, one module per job: `python -m ray_jobs.<job> --config configs/<job>/<name>.yaml [key=value ...]`.
Thin: read the config, declare the stages from `gliner/`, `corpus/` and `synth/` pieces, run them on what
`ray_jobs.runtime` provides (training jobs on `ray_jobs.training`), summarise."""
