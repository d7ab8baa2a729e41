from .fid import feature_statistics, frechet_distance, inception_features
from .metrics import METRICS_DIR, available_metrics, load_metric
from .reconstruction import evaluate_reconstruction, psnr, ssim
from .retrieval import image_diversity, image_features, retrieval_accuracy
from .vqa import normalize_vqa_answer, vqa_accuracy
