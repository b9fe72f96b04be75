"""Kubeflow Pipelines v2 components of the DanQ pipeline, one module per stage.

Each is a lightweight Python component whose body only converts KFP artifacts to folders and
calls danq.kfp.tasks, so the logic lives (and is tested) in the package. base_image is the
project image, which has the package installed, and install_kfp_package=False: on the cluster
the step runs in that image, under kfp.local.SubprocessRunner in the current environment.
Unit-test a component by calling its `.python_func` with artifacts whose uri is a local path.
"""

# Where infra/docker/'s images are pushed by default; `danq pipeline compile --image
# --cpu-image` (or DANQ_IMAGE, DANQ_CPU_IMAGE) set others on every task. Train runs on the GPU
# image, the other steps on the CPU image.
DEFAULT_GPU_IMAGE = "us-docker.pkg.dev/my-gcp-project/danq/danq-gpu:0.1.0"
DEFAULT_CPU_IMAGE = "us-docker.pkg.dev/my-gcp-project/danq/danq-cpu:0.1.0"
