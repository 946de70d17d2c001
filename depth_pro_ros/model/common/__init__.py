"""What every model family shares: the ViT, the config base and precisions, the Hugging
Face ViT key rules, the batch-recipe interface the engine runs, and the errors."""
