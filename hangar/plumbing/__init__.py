"""Generic git plumbing: bulk pack writing, tree editing, refs. Knows nothing of hangar."""
