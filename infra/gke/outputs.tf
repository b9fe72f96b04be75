output "node_pool" {
  description = "Name of the GPU node pool."
  value       = google_container_node_pool.gpu.name
}

output "node_selector" {
  description = "The node label the pipeline's train step selects (its gpu_type parameter)."
  value       = { "cloud.google.com/gke-accelerator" = var.accelerator_type }
}
