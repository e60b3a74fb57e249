"""What people do with the models, each task a module over the layers below: embeddings
(``embed``), probing (``probe``), fine-tuning (``finetune``), pretraining (``pretrain``,
``pretrain_data``, ``baselines``), the downstream benchmark (``benchmark``), a pretrained model's
figures and model card (``modelcard``), predictors and
perturbations (``predictors``, ``perturb``, ``variants``, ``mutagenesis``), splice sites
(``splice``), segmentation (``segmentation``), track heads (``tracks``), genome annotation
(``annotate``), attention maps (``attention``) and the offline demo (``demo``).

Imports: ``ntkit.core``, ``ntkit.runtime``, ``ntkit.io``, ``ntkit.models`` and other tasks (no circles).
"""
