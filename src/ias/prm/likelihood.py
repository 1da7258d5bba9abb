"""A PRM that verifies by likelihood: a Llama body, its LM head, and a 2-class head at the tags.

A small transformer fine-tuned only on success labels learns how hard a problem is long
before it learns to check `6-3=4` (a comparison circuit it has to discover). A PRM
started from a policy already knows what each step *should* say: its LM head gives the
log-probability of every written token. This head reads, at each step tag, the body's
hidden state plus two surprise features: the least likely token of the solution so far
and of the current step. A miscalculated digit is a token the body finds very unlikely,
so checking is built in, while the hidden state still carries how hard the problem is.

Registered with transformers' Auto classes (model type `ias-likelihood-prm`), so a saved
folder loads with `AutoModelForTokenClassification.from_pretrained` once `ias` is imported.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForTokenClassification, LlamaConfig, LlamaModel
from transformers.modeling_outputs import TokenClassifierOutput
from transformers.models.llama.modeling_llama import LlamaPreTrainedModel

FLOOR = -20.0  # log-probabilities below this all mean "certainly wrong"
SEGMENT = 1000.0  # offset separating steps in the running minimum (|FLOOR| << SEGMENT)


class LikelihoodPRMConfig(LlamaConfig):
    """A Llama config plus the token ids the surprise features must skip.

    `tag_id`: the step tag (its own likelihood, and that of the token after it, mean
    nothing to the body). `start_ids`: the token pair that ends the question; tokens up
    to it are the question's, not the solution's.
    """

    model_type = "ias-likelihood-prm"

    def __init__(self, tag_id: int = 0, start_ids: tuple[int, int] = (0, 0), **kwargs):
        super().__init__(**kwargs)
        self.tag_id = tag_id
        self.start_ids = list(start_ids)


class LikelihoodPRM(LlamaPreTrainedModel):
    config_class = LikelihoodPRMConfig

    def __init__(self, config: LikelihoodPRMConfig):
        super().__init__(config)
        self.num_labels = 2
        self.model = LlamaModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.score = nn.Linear(config.hidden_size + 2, 2)
        self.post_init()

    def surprise(self, input_ids: torch.Tensor, hidden: torch.Tensor, attention_mask: torch.Tensor | None):
        """(least likely solution token so far, least likely token of the current step) per position."""
        logp = torch.log_softmax(self.lm_head(hidden[:, :-1]).float(), dim=-1)
        written = logp.gather(-1, input_ids[:, 1:, None])[..., 0].clamp(min=FLOOR)
        written = torch.cat([torch.zeros_like(written[:, :1]), written], dim=1)
        is_tag = input_ids == self.config.tag_id
        after_tag = torch.cat([torch.zeros_like(is_tag[:, :1]), is_tag[:, :-1]], dim=1)
        first, second = self.config.start_ids
        ends_question = (input_ids[:, 1:] == second) & (input_ids[:, :-1] == first)
        in_solution = torch.cat([torch.zeros_like(ends_question[:, :1]), ends_question], dim=1).cumsum(1) > 0
        in_solution &= torch.cat([torch.zeros_like(ends_question[:, :1]), ends_question], dim=1).logical_not()
        valid = in_solution & ~is_tag & ~after_tag
        if attention_mask is not None:
            valid &= attention_mask.bool()
        scored = torch.where(valid, written, torch.zeros_like(written))
        so_far = scored.cummin(dim=1).values
        step = (is_tag.long().cumsum(1) - is_tag.long()).float() * SEGMENT
        in_step = (scored - step).cummin(dim=1).values + step
        return so_far, in_step

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, labels=None, **kwargs):
        body = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, **kwargs)
        hidden = body.last_hidden_state
        so_far, in_step = self.surprise(input_ids, hidden, attention_mask)
        features = torch.stack([so_far, in_step], dim=-1) / 5.0
        logits = self.score(torch.cat([hidden.float(), features], dim=-1))
        return TokenClassifierOutput(logits=logits, hidden_states=body.hidden_states)


AutoConfig.register(LikelihoodPRMConfig.model_type, LikelihoodPRMConfig)
AutoModelForTokenClassification.register(LikelihoodPRMConfig, LikelihoodPRM)


def from_policy(policy_path: str, tag_id: int, start_ids: tuple[int, int]) -> LikelihoodPRM:
    """A likelihood PRM whose body and LM head are the policy's; the new head starts at zero."""
    from transformers import AutoModelForCausalLM

    policy = AutoModelForCausalLM.from_pretrained(policy_path)
    settings = policy.config.to_dict()
    for key in ("model_type", "architectures", "transformers_version", "tie_word_embeddings"):
        settings.pop(key, None)
    config = LikelihoodPRMConfig(tag_id=tag_id, start_ids=start_ids, tie_word_embeddings=False, **settings)
    config.architectures = ["LikelihoodPRM"]
    prm = LikelihoodPRM(config)
    prm.model.load_state_dict(policy.model.state_dict())
    prm.lm_head.weight.data.copy_(policy.get_output_embeddings().weight.data)
    nn.init.zeros_(prm.score.weight)
    nn.init.zeros_(prm.score.bias)
    return prm
