variable "project" {
  description = "GCP project of the GKE cluster."
  type        = string
}

variable "cluster" {
  description = "Name of the existing GKE cluster that runs Kubeflow."
  type        = string
}

variable "location" {
  description = "Region or zone of the cluster; GPUs of the chosen type must exist there."
  type        = string
}

variable "node_locations" {
  description = "Zones of the node pool (those of the location offering the GPU type); empty: the cluster's."
  type        = list(string)
  default     = []
}

variable "accelerator_type" {
  description = "GPU type; GKE labels the nodes cloud.google.com/gke-accelerator=<type>, the value the pipeline's gpu_type selects."
  type        = string
  default     = "nvidia-l4"
}

variable "accelerator_count" {
  description = "GPUs per node."
  type        = number
  default     = 1
}

variable "machine_type" {
  description = "Machine type that carries the GPU (g2-* for L4, n1-* with T4/V100, a2-* for A100)."
  type        = string
  default     = "g2-standard-8"
}

variable "max_nodes" {
  description = "Upper bound of the autoscaler; the pool scales to zero when no training runs."
  type        = number
  default     = 2
}

variable "spot" {
  description = "Spot VMs: much cheaper, may be preempted (a preempted `danq train` resumes from its last epoch when retried)."
  type        = bool
  default     = false
}

variable "node_service_account" {
  description = "Google service account of the nodes (email); empty: the Compute Engine default."
  type        = string
  default     = ""
}
