"""Models: backbones (a registry over timm), the embedding network, the model file, inference runtimes."""
