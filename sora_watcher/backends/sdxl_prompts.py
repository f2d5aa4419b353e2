"""A prompt as SDXL's embeddings, whole: long prompts are not cut at CLIP's 77 tokens.

SDXL reads a prompt through two CLIP text encoders, each with its own tokenizer; the UNet takes
both encoders' token embeddings side by side, plus the *pooled* embedding of the second (the
refiner has only the second). Left to itself the pipeline truncates each tokenizer's output to
77 tokens, and the astrology app's chart prompts run far past that. Compel encodes a long prompt
in windows of 77 tokens and joins them, through both tokenizers and encoders (``CompelForSDXL``,
the pooled embedding from the second), and reads its weighting syntax (``(word)1.2``) on the way.

The pooled embedding is the one part still made from the first window only: CLIP pools at its
end-of-text token, so words past the first 75 tokens steer the image through the token
embeddings alone, and a little less than those in front.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # loaded by the backend, only once the extra is known to be there
    import torch
    from compel.prompt_parser import Conjunction

# What Compel's parser could read as syntax: brackets, quotes, escapes, weights (``word+``,
# ``word-``, a hyphen not inside a word) and a comma it would space. A prompt without any is
# one fragment of weight 1, its whitespace runs made one space (checked against the parser).
CHECKED_COMPEL = "2.5."  # the grammar SYNTAX was checked against
SYNTAX = re.compile(r'[()\[\]+\\"]|-(?!\w)|(?<!\w)-|,(?! )')
WHITESPACE = re.compile(r"[ \t\n\r]+")


@dataclass(frozen=True)
class Embeddings:
    """What the pipeline takes instead of the prompt's text."""

    prompt: torch.Tensor  # (batch, tokens, width): tokens a multiple of 77 for a long prompt
    pooled: torch.Tensor
    negative: torch.Tensor
    negative_pooled: torch.Tensor

    def arguments(self) -> dict[str, Any]:
        return {
            "prompt_embeds": self.prompt,
            "pooled_prompt_embeds": self.pooled,
            "negative_prompt_embeds": self.negative,
            "negative_pooled_prompt_embeds": self.negative_pooled,
        }

    @property
    def tokens(self) -> int:
        """How many token positions the prompt was encoded in (77 per window)."""
        return int(self.prompt.shape[1])


def is_plain(text: str) -> bool:
    """A prompt that uses none of Compel's syntax (control characters go to the parser)."""
    return not SYNTAX.search(text) and WHITESPACE.sub("", text).isprintable()


def parse(text: str) -> Conjunction:
    """Compel's reading of a prompt, skipping its parser for a plain prompt: the parser
    (pyparsing) takes about 35 ms a call on a CPU, and runs once per encoder, which is most
    of what the daemon adds to an image on a fast GPU."""
    from compel.prompt_parser import Conjunction, FlattenedPrompt, Fragment, PromptParser

    if not is_plain(text):
        return PromptParser().parse_conjunction(text)  # what Compel itself does
    words = WHITESPACE.sub(" ", text).strip(" ")
    return Conjunction([FlattenedPrompt([Fragment(words, 1.0)])])


class Encoder:
    """Encodes prompts for one pipeline: SDXL base (two encoders) or the refiner (the second
    only). Made once per loaded pipeline; each call is a few milliseconds on a GPU."""

    def __init__(self, pipe: Any, device: str | None = None) -> None:
        from compel import Compel, CompelForSDXL, ReturnedEmbeddingsType

        self.zeros_for_empty = bool(getattr(pipe.config, "force_zeros_for_empty_prompt", False))
        self.both = pipe.text_encoder is not None
        if self.both:
            self.compel: Any = CompelForSDXL(pipe, device=device)
        else:  # the refiner: the second encoder alone, pooled
            self.compel = Compel(
                tokenizer=pipe.tokenizer_2,
                text_encoder=pipe.text_encoder_2,
                returned_embeddings_type=ReturnedEmbeddingsType.PENULTIMATE_HIDDEN_STATES_NON_NORMALIZED,
                truncate_long_prompts=False,
                requires_pooled=True,
                device=device,
            )
        compels = (self.compel.compel_1, self.compel.compel_2) if self.both else (self.compel,)
        if version("compel").startswith(CHECKED_COMPEL):  # another may have a new syntax
            for compel in compels:
                compel.parse_prompt_string = parse  # shadows Compel's classmethod, for this one

    def __call__(self, prompt: str, negative: str | None) -> Embeddings:
        import torch

        if not negative and self.zeros_for_empty:
            # What the pipeline itself does for SDXL base with no negative prompt: zeros, not
            # the embedding of "" (the model was trained so), the same pixels as without us.
            embeds, pooled = self._encode(prompt, None)
            return Embeddings(embeds, pooled, torch.zeros_like(embeds), torch.zeros_like(pooled))
        embeds, pooled = self._encode(prompt, negative or "")
        return Embeddings(embeds[:1], pooled[:1], embeds[1:], pooled[1:])

    def _encode(self, prompt: str, negative: str | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The embeddings and pooled embeddings of the prompt, then of the negative if given,
        one batch (padded to the same length)."""
        import torch

        with torch.no_grad():
            if not self.both:
                texts = [prompt] if negative is None else [prompt, negative]
                embeds, pooled = self.compel(texts)
                return embeds, pooled
            made = self.compel(prompt, negative_prompt=negative)
            if negative is None:
                return made.embeds, made.pooled_embeds
            return (
                torch.cat([made.embeds, made.negative_embeds]),
                torch.cat([made.pooled_embeds, made.negative_pooled_embeds]),
            )
