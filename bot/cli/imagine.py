"""`python -m bot imagine "prompt"`: a grid through `GenerationService`, as `/imagine` makes it, saved to a folder."""

import argparse
import asyncio
import dataclasses
from collections.abc import Sequence
from pathlib import Path

from bot.app import InvalidRequestError
from bot.app.generation import GenerationService
from bot.app.generation_types import GenerationError, Origin
from bot.app.imaging import compose_grid
from bot.app.runtime import StopRequestedError, open_runtime
from bot.app.services import generation_service
from bot.cli.args import (
    CLI_OWNER,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SOME_FAILED,
    Prompt,
    UsageError,
    parse_job_prompt,
)
from bot.cli.console import Console, interruptible
from bot.core.admission import REFUSAL_TITLE
from bot.core.item_errors import NOT_MADE, item_error_message
from bot.core.models import Job
from bot.settings import BotSettings


async def run_imagine(args: argparse.Namespace, settings: BotSettings, console: Console) -> int:
    """Run `python -m bot imagine` through `GenerationService`, as `/imagine` does; return the exit status.

    A prompt with `{a, b}` permutations or `--repeat` makes one grid per expansion and run: the count and cost are
    printed, then every grid is made and saved (asking first is the interactive front ends' business).
    """
    prompt = parse_job_prompt(args.prompt, args)
    for ref in args.ref:
        if not await asyncio.to_thread(ref.is_file):
            raise UsageError(f"{ref}: no such file")
    out: Path = args.out
    async with interruptible() as stop, open_runtime(settings, serve_links=False) as runtime:
        service = generation_service(runtime)
        origin = Origin(user_id=CLI_OWNER, is_admin=True)
        try:
            bodies = [(ref.name, await asyncio.to_thread(ref.read_bytes)) for ref in args.ref]
            ref_keys = await service.take_references(bodies)
            plan = await service.imagine_all(
                args.prompt,
                origin,
                max_prompts=settings.max_prompts_per_request,
                ref_keys=ref_keys,
                # The flags win over every expansion's own parameters; a grid is 4 images unless told otherwise.
                overrides=dataclasses.replace(prompt.flags, grid_size=prompt.flags.grid_size or _grid_size(prompt)),
            )
            if len(plan.jobs) > 1:
                cost = "price unknown" if plan.cost_usd is None else f"about ${plan.cost_usd:.2f}"
                console.note(f"{len(plan.jobs)} grids ({plan.images} images), {cost}")
            submitted = await service.submit_all(plan, origin)
        except (GenerationError, InvalidRequestError) as exc:
            raise UsageError(exc.user_message) from exc
        all_made = True
        for one in submitted:
            result = one.result
            if result.job is None:
                raise UsageError(f"{REFUSAL_TITLE}: {result.message}")
            console.note(f"job {result.job.id}: making {result.job.total} image(s) of {one.prepared.display}")
            for note in one.prepared.notes:  # ignored Midjourney parameters, a snapped ratio: as under a Discord result
                console.note(note)
            try:
                job = await runtime.run_until_final(
                    result.job.id, stop, tick_s=0.1, give_up_after_s=args.give_up_after, on_delayed=console.delayed
                )
            except StopRequestedError:
                console.note(f"interrupted; job {result.job.id} was not finished")
                return EXIT_INTERRUPTED
            await _save(service, job, out, console)
            recorded = await service.job_cost(job.id)
            spent = (
                "no cost recorded"
                if recorded is None
                else f"${recorded:.4f} spent (Gemini's reported usage, RunPod time)"
            )
            console.note(f"job {job.id} {job.status.value}: {job.ok} made, {job.failed} failed; {spent}")
            all_made = all_made and job.ok == job.total
    return EXIT_OK if all_made else EXIT_SOME_FAILED


def _grid_size(prompt: Prompt) -> int | None:
    """Return the grid size the prompt sets for every expansion (None: each its own, else the default)."""
    return prompt.params.grid_size if prompt.expansions == 1 else None


async def _save(service: GenerationService, job: Job, out: Path, console: Console) -> None:
    """Write a finished job's images and its grid to `out`, naming each file on stdout."""
    await asyncio.to_thread(out.mkdir, parents=True, exist_ok=True)
    images: list[bytes | None] = []
    for item, data in await service.outputs(job.id):
        images.append(data)
        if data is None:
            code = item.error_code or NOT_MADE
            console.note(f"image {item.index + 1} failed: {code} {item_error_message(code)}")
            continue
        target = out / f"{job.id}_{item.index + 1}.png"
        await asyncio.to_thread(target.write_bytes, data)
        console.say(str(target))
    if any(images):
        grid_path = out / f"{job.id}_grid.png"
        await asyncio.to_thread(_save_grid, images, grid_path)
        console.say(str(grid_path))


def _save_grid(images: Sequence[bytes | None], path: Path) -> None:
    compose_grid(images).save(path, "PNG")


__all__ = ["run_imagine"]
