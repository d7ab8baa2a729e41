"""Fréchet Inception Distance, as a local `evaluate` metric:
`transformers_unicode.evaluation.load_metric("frechet_inception_distance")`."""

import datasets
import evaluate

from transformers_unicode.evaluation.fid import feature_statistics, frechet_distance, inception_features

_DESCRIPTION = """
Fréchet Inception Distance (Heusel et al. 2017): both image sets are embedded with Inception-v3 (the 2048-d
pool features), each set's features are summarised by their mean and covariance, and the score is the
Fréchet distance between the two Gaussians. Lower is better; 0 for identical sets. With reconstructions as
predictions and the originals as references this is rFID, the usual score of a visual tokenizer.
The network is the TorchScript `inception-2015-12-05.pt` of StyleGAN / clean-fid, read from `inception_path`
(nothing is downloaded). FID is biased upwards for small sets; compare scores computed on equally many images,
and use thousands of them (the covariance has 2048 x 2048 entries).
"""

_CITATION = """
@inproceedings{heusel2017gans,
  title={{GANs} Trained by a Two Time-Scale Update Rule Converge to a Local {N}ash Equilibrium},
  author={Heusel, Martin and Ramsauer, Hubert and Unterthiner, Thomas and Nessler, Bernhard and Hochreiter, Sepp},
  booktitle={Advances in Neural Information Processing Systems (NeurIPS)},
  year={2017}
}
@inproceedings{parmar2022aliased,
  title={On Aliased Resizing and Surprising Subtleties in {GAN} Evaluation},
  author={Parmar, Gaurav and Zhang, Richard and Zhu, Jun-Yan},
  booktitle={Conference on Computer Vision and Pattern Recognition (CVPR)},
  year={2022}
}
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of images): generated or reconstructed images (PIL images, HxWx3 uint8 arrays or
        image file paths).
    references (`list` of images): real images, as many as predictions (`evaluate` stores them in pairs; for
        sets of different sizes use `inception_features` and `frechet_distance` directly).
    inception_path (`str`): the TorchScript file `inception-2015-12-05.pt`.
    batch_size (`int`, defaults to 64): images per forward pass; images of one batch must share a size.
    device (`str`, *optional*): where to run the network; CUDA when there is one.
Returns:
    frechet_inception_distance (`float`): the FID between the two sets.
    count (`int`): the number of images in each set.
Examples:
    >>> from transformers_unicode.evaluation import load_metric
    >>> fid = load_metric("frechet_inception_distance")
    >>> fid.compute(predictions=reconstructions, references=originals, inception_path="inception-2015-12-05.pt")
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class FrechetInceptionDistance(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Image(), "references": datasets.Image()}),
            reference_urls=[
                "https://github.com/GaParmar/clean-fid",
                "https://github.com/NVlabs/stylegan2-ada-pytorch",
            ],
        )

    def _compute(self, predictions, references, inception_path=None, batch_size=64, device=None):
        if inception_path is None:
            raise ValueError(
                "frechet_inception_distance needs inception_path= the file inception-2015-12-05.pt."
            )
        generated = inception_features(predictions, inception_path, batch_size, device)
        real = inception_features(references, inception_path, batch_size, device)
        value = frechet_distance(*feature_statistics(generated), *feature_statistics(real))
        return {"frechet_inception_distance": value, "count": len(generated)}
