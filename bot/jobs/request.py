"""What a member asked for, validated against the model catalog before anything is paid for.

`RequestOptions` is what a member asked for, as given (a command's options, a form's
answers, or a stored job's request asked again by a result button: `options_for_job`);
`build_request` turns it into an `ImagineRequest` or raises `RequestError` whose message
tells the member exactly what to change. `request_for_job` rebuilds a stored job's request
as it was accepted, without validating it again (resuming, Details).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from bot.catalog import AUTO_RATIO, DEFAULT_SPEED, MAX_TOTAL_IMAGES, Catalog, ModelSpec
from bot.i18n import Readable, TextError, _, join
from bot.jobs.records import JobOrigin, JobRecord, NewJob
from bot.references import ReferenceRejectedError, ReferenceSource, check_sources

DEFAULT_RATIO = "1:1"


class RequestError(TextError):
    """The request cannot be run as given; `text` says what to change."""


@dataclass(frozen=True)
class ImagineRequest:
    """A validated generation request."""

    prompt: str
    model: ModelSpec
    ratio: str
    n: int
    resolution: str | None
    requester_id: int
    reference_urls: tuple[str, ...] = ()  # public copies the image service can fetch (uploaded)
    reference_sources: tuple[ReferenceSource, ...] = ()  # the member's images, before upload
    watermark: bool = False  # decided by the operator and the server (`bot.policy.watermark`)
    speed: str | None = None  # the prompt-optimisation mode; None: the model has none (nothing sent)
    layers: bool = False  # ask for the image split into transparent layers (models with supports_layers)
    spoiler: bool = False  # post the images as spoilers (`bot.preferences.spoiler_wanted`); never sent

    @property
    def reference_count(self) -> int:
        return len(self.reference_urls) + len(self.reference_sources)

    def submit_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `ToAPIsClient.submit`."""
        # Said explicitly every time: the provider's own default puts a watermark on some models.
        metadata: dict[str, Any] = {"watermark": self.watermark}
        if self.speed is not None:
            metadata["optimize_prompt_options"] = {"mode": self.speed}
        extra = _merged(self.model.request_fields(self.resolution), {"metadata": metadata})
        kwargs: dict[str, Any] = {
            "model": self.model.id,
            "prompt": self.prompt,
            "size": self.ratio,
            "n": self.n,
            "image_urls": self.reference_urls,
        }
        if self.layers:
            extra = {**extra, "layer_decomposition": True}
        if extra:
            kwargs["extra_fields"] = extra
        return kwargs


def _merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """`base` with `extra` merged in, nested objects merged key by key."""
    merged = dict(base)
    for key, value in extra.items():
        current = merged.get(key)
        merged[key] = (
            _merged(current, value) if isinstance(current, dict) and isinstance(value, dict) else value
        )
    return merged


@dataclass(frozen=True)
class RequestOptions:
    """What a member asked for, not yet validated; None leaves the default to `build_request`."""

    prompt: str
    model_id: str | None = None  # None: the operator's default model
    ratio: str | None = None
    n: int | None = None
    resolution: str | None = None
    speed: str | None = None  # None: the model's default mode
    references: tuple[ReferenceSource, ...] = ()  # the member's images, as Discord describes them
    hosted_references: tuple[str, ...] = ()  # copies the image service already holds
    layers: bool = False
    spoiler: bool = False  # asked for by the job being repeated (a reroll of a spoilered result)


def options_for_job(job: JobRecord, **changes: Any) -> RequestOptions:
    """A stored job's request asked again, with `changes` (the one rebuild every result button uses).

    Reroll asks it unchanged, Vary with one posted image as the reference, Remix with the
    form's answers. Raises TypeError for a change that is not a `RequestOptions` field.
    """
    asked = RequestOptions(
        prompt=job.prompt,
        model_id=job.model,
        ratio=job.ratio,
        n=job.n,
        resolution=job.resolution,
        speed=job.speed,
        hosted_references=job.reference_urls,
        layers=job.layers,
        spoiler=job.spoiler,
    )
    return dataclasses.replace(asked, **changes)


def _listing(values: tuple[str, ...] | list[str]) -> str:
    return ", ".join(f"`{v}`" for v in values)


def _models_that_can(names: list[str]) -> Readable | None:
    """The second sentence of a refusal naming the models that can do what was asked (None: none can)."""
    return _("Models that can: {models}.", models=_listing(names)) if names else None


def _also(refusal: Readable, also: Readable | None) -> Readable:
    """A refusal followed by a second sentence, when there is one."""
    return refusal if also is None else join([refusal, also], " ")


def build_request(
    catalog: Catalog, options: RequestOptions, *, default_model: str, requester_id: int
) -> ImagineRequest:
    """Validate what a member asked for; raise `RequestError` naming what is allowed.

    Reference images are checked here only by what Discord says of them (type, size,
    dimensions): cheap enough to answer before anything is downloaded or paid for.
    `hosted_references` are copies the image service already holds (a reroll reuses a
    job's); only their number is checked.
    """
    model_id = options.model_id or default_model
    prompt, ratio, n, resolution = options.prompt, options.ratio, options.n, options.resolution
    references, hosted_references = options.references, options.hosted_references
    model = catalog.find(model_id)
    if model is None:
        names = [m.display_name for m in catalog]
        raise RequestError(
            _("Unknown model `{model}`. Choose one of: {models}.", model=model_id, models=_listing(names))
        )

    text = (prompt or "").strip()
    if not text:
        raise RequestError(_("Your prompt is empty — describe the image you want to see."))
    if len(text) > model.max_prompt_length:
        raise RequestError(
            _(
                "Your prompt is {length} characters long; {model} accepts at most {most}. "
                "Shorten it and try again.",
                length=f"{len(text):,}",
                model=model.display_name,
                most=f"{model.max_prompt_length:,}",
            )
        )

    ratio = ratio or DEFAULT_RATIO
    has_references = bool(references or hosted_references)
    if ratio == AUTO_RATIO:
        if not model.supports_auto:
            auto_models = [m.display_name for m in catalog if m.supports_auto]
            refusal = _(
                "{model} does not support the `auto` ratio. Choose one of: {ratios}.",
                model=model.display_name,
                ratios=_listing(model.ratios),
            )
            raise RequestError(_also(refusal, _models_that_can(auto_models)))
        if not has_references:
            raise RequestError(
                _(
                    "The `auto` ratio matches a reference image, so it needs at least one image: "
                    "attach one, or choose a ratio."
                )
            )
    elif ratio not in model.ratios:
        raise RequestError(
            _(
                "{model} does not support the ratio `{ratio}`. Choose one of: {ratios}.",
                model=model.display_name,
                ratio=ratio,
                ratios=_listing(model.ratios),
            )
        )

    count = 1 if n is None else n
    limit = min(model.max_images, MAX_TOTAL_IMAGES)
    if not 1 <= count <= limit:
        raise RequestError(
            _(
                "{model} makes 1 to {most} images per request; you asked for {asked}.",
                model=model.display_name,
                most=limit,
                asked=count,
            )
        )

    if resolution is not None:
        if not model.resolutions:
            raise RequestError(
                _(
                    "{model} has no resolution option — leave `resolution` empty, "
                    "or pick a model that has one.",
                    model=model.display_name,
                )
            )
        if resolution not in model.resolutions:
            raise RequestError(
                _(
                    "{model} does not offer resolution `{resolution}`. Choose one of: {resolutions}.",
                    model=model.display_name,
                    resolution=resolution,
                    resolutions=_listing(model.resolutions),
                )
            )
    else:
        resolution = model.default_resolution

    speed = _speed(catalog, model, options.speed)

    if options.layers and not model.supports_layers:
        layered = [m.display_name for m in catalog if m.supports_layers]
        refusal = _(
            "{model} cannot split an image into layers — leave `layers` off, or pick a model that can.",
            model=model.display_name,
        )
        raise RequestError(_also(refusal, _models_that_can(layered)))

    counted = references + tuple(
        ReferenceSource(
            filename=f"reference {i}", url=url, content_type=None, size=None, width=None, height=None
        )
        for i, url in enumerate(hosted_references, start=1)
    )
    if counted:
        try:
            check_sources(
                counted, n=count, max_references=model.max_reference_images, model_name=model.display_name
            )
        except ReferenceRejectedError as exc:
            raise RequestError(exc.text) from None

    return ImagineRequest(
        prompt=text,
        model=model,
        ratio=ratio,
        n=count,
        resolution=resolution,
        requester_id=requester_id,
        reference_urls=hosted_references,
        reference_sources=references,
        speed=speed,
        layers=options.layers,
    )


def _speed(catalog: Catalog, model: ModelSpec, asked: str | None) -> str | None:
    """The prompt-optimisation mode to send (None: send none); `RequestError` if the model lacks it.

    A model without modes takes `standard` (the option's default) as "nothing special" and sends
    nothing; only an explicit other mode is refused.
    """
    if not model.speed_modes:
        if asked is None or asked == DEFAULT_SPEED:
            return None
        having = [m.display_name for m in catalog if asked in m.speed_modes]
        refusal = _(
            "{model} has no `{speed}` speed — leave `speed` empty, or pick another model.",
            model=model.display_name,
            speed=asked,
        )
        also = _("Models that have it: {models}.", models=_listing(having)) if having else None
        raise RequestError(_also(refusal, also))
    if asked is None:
        return DEFAULT_SPEED if DEFAULT_SPEED in model.speed_modes else model.speed_modes[0]
    if asked not in model.speed_modes:
        raise RequestError(
            _(
                "{model} does not offer speed `{speed}`. Choose one of: {speeds}.",
                model=model.display_name,
                speed=asked,
                speeds=_listing(model.speed_modes),
            )
        )
    return asked


def new_job(request: ImagineRequest, origin: JobOrigin) -> NewJob:
    """The job to record for `request`, asked at `origin` (the inverse of `request_for_job`)."""
    return NewJob(
        guild_id=origin.guild_id,
        channel_id=origin.channel_id,
        user_id=origin.user_id,
        application_id=origin.application_id,
        interaction_id=origin.interaction_id,
        interaction_token=origin.interaction_token,
        token_expires_at=origin.token_expires_at,
        upload_limit=origin.upload_limit,
        prompt=request.prompt,
        model=request.model.id,
        ratio=request.ratio,
        resolution=request.resolution,
        n=request.n,
        reference_urls=request.reference_urls,
        reference_count=request.reference_count,
        watermark=request.watermark,
        speed=request.speed,
        layers=request.layers,
        spoiler=request.spoiler,
        context=origin.conversation.context.value,
        installed_by=origin.conversation.installed_by,
        bot_in_channel=origin.conversation.bot_in_channel,
        locale=origin.locale,
        guild_locale=origin.guild_locale,
    )


def request_for_job(job: JobRecord, catalog: Catalog) -> ImagineRequest:
    """The request a stored job was made from (a model since removed from the catalog keeps its id)."""
    model = catalog.find(job.model) or ModelSpec(id=job.model, display_name=job.model)
    return ImagineRequest(
        prompt=job.prompt,
        model=model,
        ratio=job.ratio,
        n=job.n,
        resolution=job.resolution,
        requester_id=job.user_id,
        reference_urls=job.reference_urls,
        # Jobs recorded before the bot said it explicitly got the provider's default.
        watermark=model.watermark_default if job.watermark is None else job.watermark,
        speed=job.speed,
        layers=job.layers,
        spoiler=job.spoiler,
    )
