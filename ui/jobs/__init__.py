"""The Jobs screen (recent background jobs) and the shared job progress widget."""
