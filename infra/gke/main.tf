# A GPU node pool for the DanQ pipeline's train step, in an existing GKE cluster.
# The pool scales from zero: a GPU node exists only while a train pod waits for or uses it.

# The cluster this pool joins, read to check that it enforces NetworkPolicy: the policies of
# infra/k8s/mlflow (PostgreSQL reachable only from MLflow, MLflow only from the pipeline's
# namespace) are inert on a cluster whose dataplane ignores them.
data "google_container_cluster" "cluster" {
  name     = var.cluster
  location = var.location
}

resource "google_container_node_pool" "gpu" {
  name           = "gpu-${var.accelerator_type}"
  cluster        = var.cluster
  location       = var.location
  node_locations = length(var.node_locations) > 0 ? var.node_locations : null

  initial_node_count = 0
  autoscaling {
    min_node_count = 0
    max_node_count = var.max_nodes
  }

  management {
    auto_repair  = true
    auto_upgrade = true
  }

  node_config {
    machine_type    = var.machine_type
    spot            = var.spot
    disk_size_gb    = 100
    disk_type       = "pd-balanced"
    service_account = var.node_service_account != "" ? var.node_service_account : null
    oauth_scopes    = ["https://www.googleapis.com/auth/cloud-platform"]

    guest_accelerator {
      type  = var.accelerator_type
      count = var.accelerator_count
      # GKE installs the NVIDIA driver itself; no driver DaemonSet to maintain.
      gpu_driver_installation_config {
        gpu_driver_version = "LATEST"
      }
    }

    # GKE adds this taint to GPU nodes anyway; declared so that Terraform does not report
    # drift, and because the pipeline's train step tolerates exactly this key and effect.
    taint {
      key    = "nvidia.com/gpu"
      value  = "present"
      effect = "NO_SCHEDULE"
    }

    # Pods authenticate to GCS as their Kubernetes service account (Workload Identity).
    workload_metadata_config {
      mode = "GKE_METADATA"
    }
  }

  lifecycle {
    precondition {
      # GKE Dataplane V2 (Cilium) enforces NetworkPolicy itself; otherwise the network policy
      # addon (Calico) must be on.
      condition = (
        data.google_container_cluster.cluster.datapath_provider == "ADVANCED_DATAPATH"
        || anytrue([for policy in data.google_container_cluster.cluster.network_policy : policy.enabled])
      )
      error_message = "Cluster ${var.cluster} does not enforce NetworkPolicy (neither GKE Dataplane V2 nor the network policy addon), so infra/k8s/mlflow's policies would not isolate PostgreSQL and MLflow. Enable the addon, then enforcement (which recreates the nodes): gcloud container clusters update ${var.cluster} --location=${var.location} --update-addons=NetworkPolicy=ENABLED, then the same with --enable-network-policy. Or use a cluster created with GKE Dataplane V2 (--enable-dataplane-v2)."
    }
  }
}
