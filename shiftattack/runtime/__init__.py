"""Running models and jobs: :mod:`.engine` (ModelRunner, devices, margins), :mod:`.distributed`
(torchrun), :mod:`.units` (resumable units of work), :mod:`.results` (atomic result files)."""
