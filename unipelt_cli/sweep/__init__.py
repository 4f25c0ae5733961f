"""`unipelt sweep`: grids of runs that resume after any crash, locally or on a cluster.

grid.py      Hydra sweep grammar and conf/sweep presets -> jobs with run ids (planning)
derive.py    each job's config derived from one compose per axis value (planning without a compose per job)
lock.py      one owner per run: an flock on <run>/.lock, dropped by the kernel when its owner dies
job.py       run_job: the self-contained job every back-end runs (re-checks, locks, trains)
backends.py  in-process, local worker processes (-j N), submitit (Slurm / local executor)
worker.py    the local worker process
cluster.py   the submitit callable (imports submitit)
runner.py    the scheduler loop, outcomes, the manifest, the summary
display.py   live progress on a terminal, plain lines elsewhere
"""
