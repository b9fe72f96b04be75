"""Kubeflow Pipelines v2 components of the DanQ pipeline, one module per stage.

Each is a lightweight Python component whose body only converts KFP artifacts to folders and
calls danq.kfp.tasks, so the logic lives (and is tested) in the package. base_image is the
project image, which has the package installed, and install_kfp_package=False: on the cluster
the step runs in that image, under kfp.local.SubprocessRunner in the current environment.
Unit-test a component by calling its `.python_func` with artifacts whose uri is a local path.
"""

from danq.kfp.images import DEFAULT_IMAGES

# The images of the reproducible default compile: placeholders (registry
# us-docker.pkg.dev/my-gcp-project/danq, tag `unbuilt`) that upload and run refuse.
# `danq pipeline compile --registry R [--tag T]` sets built ones on every task (danq.kfp.images):
# the steps on GPU nodes run on the GPU image, the others on the CPU image.
DEFAULT_GPU_IMAGE = DEFAULT_IMAGES.gpu
DEFAULT_CPU_IMAGE = DEFAULT_IMAGES.cpu
