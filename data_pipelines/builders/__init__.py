"""TFDS builders, one package each (TFDS needs that): celeba_faces, casia_webface, ffhq,
image_mix. Shared recipes and the prepare loop: `data_pipelines.builders.recipe`."""
