"""Method kind ``checkpoint``: any checkpoint spandrel can read, scored as a plain restoration network.

``path`` is a fetch registry name of kind ``weights`` or a file (``{out}`` is filled in, so a file the
workflow wrote itself, such as an exported network, can be scored).  The architecture and its
hyperparameters are detected from the file (:func:`dpir.nets.foreign.load_foreign`); the method is a
:class:`dpir.methods.simple.Backbone`: deterministic, one network call, the input padded at the
bottom/right to ``pad_multiple`` (default: what the architecture needs, whole windows for windowed
transformers) and the output cropped.

The detected scale must be the task's (SR: ``scale``; deblurring: 1), else the file is refused with one
line.  For the run record the method carries ``architecture`` (what was detected: "HAT x4, 20.77M params
(spandrel)"), ``foreign`` (the detected facts, as ``model.json`` of an imported network records them),
``checkpoint_source`` and ``checkpoint_path``.  Burst tasks are not supported: their input is packed RAW frames.
"""
from __future__ import annotations

from dpir.errors import DpirError
from dpir.methods.base import BuildContext, Method
from dpir.methods.simple import Backbone


def build(method_cfg: dict, ctx: BuildContext) -> Method:
    from dpir.nets.foreign import load_foreign
    from dpir.official import check_single_checkpoint, resolve_official
    from dpir.tasks import output_scale, task_kind
    from dpir.workflow_facts import expand_path

    name = getattr(ctx, "method_name", None) or "<method>"     # dpir.restore names the method
    where = f"tasks.{ctx.task_name}.methods.{name}.path"
    if not task_kind(ctx.task).image_input:
        raise DpirError(f"method kind 'checkpoint' ({where}) restores RGB images; task {ctx.task_name!r} is a "
                        f"burst task (packed RAW frames), which a detected checkpoint cannot take")
    spec = expand_path(ctx.config, str(method_cfg["path"]))
    path, source = resolve_official(spec, where)
    check_single_checkpoint(path, where)
    foreign = load_foreign(path, where)
    foreign.check_rgb(where)
    scale = output_scale(ctx.task)
    if foreign.scale != scale:
        raise DpirError(f"checkpoint {path} ({where}) is a x{foreign.scale} {foreign.architecture} model, but "
                        f"task {ctx.task_name!r} needs x{scale}; give a checkpoint for this task's scale")
    net = foreign.module.to(ctx.device).eval().requires_grad_(False)
    multiple = int(method_cfg.get("pad_multiple", foreign.pad_multiple()))
    method = Backbone(net, multiple, scale)
    method.nfe_note = "one forward pass of the detected network"
    method.architecture = foreign.describe()
    method.foreign = foreign.facts()
    method.checkpoint_source, method.checkpoint_path = source, str(path)   # "file:<path>" or "fetch:<name>"
    return method
