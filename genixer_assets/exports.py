"""Out of the graph: the filtered data sets in the formats other trainers read, each with its card."""

import json
from typing import Optional

import dagster as dg
import pandas as pd
from pydantic import Field

from genixer.exports import EXPORTERS, card_path, export
from genixer.schema import read_samples
from genixer_assets.common import FILE_NAMES, FORMATS_FILE
from resources import GenixerSettings


class ExportConfig(dg.Config):
    formats: list[str] = Field(default_factory=lambda: list(EXPORTERS), description="any of llava, shikra, parquet")
    images_root: Optional[str] = Field(None, description="image paths are written relative to this folder "
                                                         "(default: the images' common folder)")
    embed_images: bool = Field(False, description="parquet: store image bytes (the `datasets` Image feature), not paths")


@dg.asset(group_name="exports", deps=["genixer_vqa", "genixer_rec"], kinds={"json", "parquet"},
          automation_condition=dg.AutomationCondition.eager())  # rewritten when a recipe refilters
def dataset_exports(config: ExportConfig, settings: GenixerSettings) -> dg.MaterializeResult:
    """Genixer-915K (`genixer_vqa`) and Genixer-350K (`genixer_rec`) as LLaVA-1.5 training JSON,
    Shikra jsonl and Hugging Face parquet, under `exports/<recipe>/<format>/`, each with a dataset
    card (README.md: sources, checkpoints by hash, λ, CLIP threshold, counts, filter funnel)."""
    unknown = sorted(set(config.formats) - set(EXPORTERS))
    if unknown:
        raise dg.Failure(f"unknown export formats {unknown}; expected any of {list(EXPORTERS)}")
    settings.path("exports", FORMATS_FILE).write_text(json.dumps({"formats": list(config.formats)}))
    rows, cards = [], {}
    for name in ("genixer_vqa", "genixer_rec"):
        table = settings.table_path(name)
        n = len(read_samples(table))
        for fmt in config.formats:
            if not n:  # an earlier run's export of this set no longer holds it: removed, not left stale
                stale = settings.path("exports", name, fmt, FILE_NAMES[fmt])
                for path in (card_path(stale), stale):  # the card found beside the file, before it goes
                    path.unlink(missing_ok=True)
                rows.append({"data": name, "format": fmt, "samples": 0, "path": "nothing to export: the filter kept no rows"})
                continue
            out, card, n_out = export(table, fmt, settings.path("exports", name, fmt, FILE_NAMES[fmt]), config.images_root,
                                      config.embed_images and fmt == "parquet")
            rows.append({"data": name, "format": fmt, "samples": n_out, "path": str(out)})
            cards.setdefault(name, card.read_text())
    return dg.MaterializeResult(metadata={
        "exports": dg.MetadataValue.md(pd.DataFrame(rows).to_markdown(index=False)),
        **{f"card_{name}": dg.MetadataValue.md(text) for name, text in cards.items()},
        "path": dg.MetadataValue.path(str(settings.path("exports"))),
    })
