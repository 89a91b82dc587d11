"""``mpfpipe ingest SOURCE... OUTPUT.zarr``: real images or synthetic data -> a dataset (mpfpipe.data)."""
from __future__ import annotations

import click

from . import cli
from ..options import cli_options
from ._common import config_option

SYNTH_KINDS = ("em", "defects")
_REAL_ONLY = ("label_map", "positive", "mask_threshold", "downsample", "class_names", "volume", "sections",
              "voxel_size", "voxel_unit", "section_context")
_SYNTH_ONLY = ("n_images", "size", "defect_fraction", "variable_size")


class _Loose(click.ParamType):
    """A string on the command line; a YAML list/dict from --config is passed through as is."""
    name = "text"
    passes_lists = True  # see _common._yaml_default

    def convert(self, value, param, ctx):
        if isinstance(value, (list, tuple, dict)):
            return value
        return str(value)


@cli.command("ingest", epilog="""\b
Sources:
  IMAGES.tif LABELS.tif [MASKS.tif]   multi-page TIFF stacks (ISBI 2012), or .npy arrays (N,H,W)/(N,C,H,W)
  ... --volume                        a stack as one (z, y, x) volume (3D nets): z-chunked, z-section splits
  ... --section-context K             a stack whose images also hold the K sections above and below (2.5-D)
  F.h5:IMAGES F.h5:LABELS [F.h5:M]    HDF5 datasets as stacks, read slice by slice (CREMI: sample_A.h5:volumes/raw
                                      sample_A.h5:volumes/labels/clefts)
  FOLDER                              searched for images/ + masks/ (NEU-Seg), <stem>.jpg + <stem>.png
                                      side by side (magnetic tile MT_*/Imgs), <stem>_mask.png; several
                                      folders are concatenated
  IMAGES_DIR MASKS_DIR                two folders of files matched by stem
  synthetic:em | synthetic:defects    generated data (uses --n-images, --size, --seed, --defect-fraction)
\b
Examples:
  mpfpipe ingest ../shared/data/isbi2012/train-volume.tif ../shared/data/isbi2012/train-labels.tif isbi.zarr \\
      --positive 0 --class-names cell,membrane --split 0.6,0.2,0.2
  mpfpipe ingest ../shared/data/isbi2012/train-volume.tif ../shared/data/isbi2012/train-labels.tif isbi3d.zarr \\
      --positive 0 --class-names cell,membrane --volume --voxel-size 50,4,4 --voxel-unit nanometer \\
      --sections train=0-1,4-8,11-15,val=3,9,16,19,test=2,10,17,18
  mpfpipe ingest ../shared/data/magnetic_tile tiles.zarr --mask-threshold 127 --split 0.5,0.25,0.25
  mpfpipe ingest ../shared/data/neu_seg neu.zarr --class-names background,inclusion,patches,scratches
  mpfpipe ingest synthetic:em em.zarr --n-images 8 --size 256x256 --seed 0
""")
@click.argument("sources", nargs=-1, required=True)
@click.argument("output", type=click.Path(dir_okay=True, file_okay=True))
@cli_options("ingest command", **{n: {"type": _Loose()} for n in ("label_map", "class_names", "split", "sections")})
@config_option
@click.pass_context
def ingest_cmd(ctx, sources, output, label_map, positive, mask_threshold, class_names, downsample, split, seed,
               volume, sections, voxel_size, voxel_unit, section_context, n_images, size, defect_fraction,
               variable_size, overwrite, progress):
    """Ingest SOURCE... into the dataset OUTPUT.zarr (Zarr v3, one image per chunk).

    Labels become uint8 class ids (255 = ignore); without --label-map/--positive, label values all below 32
    are taken as class ids and anything else is thresholded at --mask-threshold. Nothing is written unless the
    whole ingest succeeds.
    """
    from ..data import ingest, open_dataset, synth_defects, synth_em

    def given(name):
        src = ctx.get_parameter_source(name)
        return src is not None and src.name not in ("DEFAULT",)

    synthetic = [s for s in sources if s.startswith("synthetic:")]
    if synthetic:
        kind = synthetic[0].split(":", 1)[1]
        if len(sources) != 1 or kind not in SYNTH_KINDS:
            raise click.UsageError(f"synthetic sources are 'synthetic:em' or 'synthetic:defects', alone; "
                                   f"got {' '.join(sources)}")
        bad = [n for n in _REAL_ONLY if given(n)]
        if bad:
            raise click.UsageError(f"--{bad[0].replace('_', '-')} does not apply to synthetic data")
        if kind == "em":
            if given("defect_fraction") or given("variable_size"):
                raise click.UsageError("--defect-fraction/--variable-size apply to synthetic:defects only")
            path = synth_em(output, n_images=n_images or 8, size=size or (256, 256), seed=seed, split=split,
                            overwrite=overwrite, progress=progress)
        else:
            path = synth_defects(output, n_images=n_images or 16, size=size or (128, 128),
                                 defect_fraction=defect_fraction, seed=seed, split=split, overwrite=overwrite,
                                 progress=progress, variable_size=variable_size)
    else:
        bad = [n for n in _SYNTH_ONLY if given(n)]
        if bad:
            raise click.UsageError(f"--{bad[0].replace('_', '-')} applies to synthetic: sources only")
        path = ingest(list(sources), output, label_map=label_map, positive=positive, mask_threshold=mask_threshold,
                      downsample=downsample, split=split, seed=seed, overwrite=overwrite, progress=progress,
                      class_names=class_names, volume=volume, sections=sections, voxel_size=voxel_size,
                      voxel_unit=voxel_unit, section_context=section_context)
    ds = open_dataset(path)
    sizes = ds.split_sizes()
    click.echo(f"wrote {path}: {ds.n_images} images, {ds.channels} channel(s) {ds.dtype}, classes "
               f"{', '.join(ds.class_names)}; split train/val/test = {sizes['train']}/{sizes['val']}/"
               f"{sizes['test']}; {sum(ds.positive)} with a positive pixel")
    if ds.volume:
        from .info import volume_line
        click.echo(f"volume {volume_line(ds.volume)}")
