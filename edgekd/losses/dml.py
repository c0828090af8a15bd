"""Deep mutual learning (Zhang et al., CVPR 2018): students that teach each other, no teacher needed.

The distilled student is peer 0; this loss owns the other peers (architectures from `peers`, built
like the student: same classes, same input stem), so they are trained and checkpointed with it and
never exported. A forward pre-hook on the student captures each batch; the peers run on it in the
student's mode. With z_k the logits of peer k of K:
loss_k = CE(z_k) + mutual_weight * mean_{j != k} T^2 KL(softmax(z_j.detach() / T) || softmax(z_k / T))
         [+ kd_weight * T^2 KL(softmax(teacher / T) || softmax(z_k / T))]
and the loss is sum_k loss_k: one backward pass updates every peer jointly (the paper alternates
the peers' updates; detaching the targets gives each peer its own gradient either way).
QAT fine-tunes the student alone (`for_finetuning`): peers started over would only add noise.
"""

import torch
from pydantic import Field, field_validator
from torch import nn

from edgekd.errors import EdgekdError
from edgekd.losses.base import LOSSES, DistillLoss, LossConfig, soft_kl
from edgekd.losses.hooks import model_device
from edgekd.losses.kd import ce_plus_kd
from edgekd.models import check_model_name, create_model


class DMLConfig(LossConfig):
    renamed = {"teacher_weight": "write kd_weight"}

    peers: list[str] | None = Field(
        None, min_length=1, description="architectures of the other peers (model names); None: one like the student"
    )
    temperature: float = Field(1.0, gt=0, description="T of the KL terms (paper: 1)")
    mutual_weight: float = Field(1.0, ge=0, description="weight of the mean KL to the other peers")
    kd_weight: float = Field(0.0, ge=0, description="weight of Hinton KD from the teacher on each peer (0: off)")

    @field_validator("peers")
    @classmethod
    def _known_models(cls, peers: list[str] | None) -> list[str] | None:
        for arch in peers or []:
            try:
                check_model_name(arch)
            except EdgekdError as e:
                raise ValueError(str(e)) from None
        return peers


@LOSSES.register("dml")
class DML(DistillLoss):
    Config = DMLConfig

    def __init__(self, config: DMLConfig):
        super().__init__(config)
        self.uses_teacher = config.kd_weight > 0  # pure DML never runs the teacher
        self.peers = nn.ModuleList()
        self._batch: torch.Tensor | None = None
        self._student_training = True
        self._handle: torch.utils.hooks.RemovableHandle | None = None

    def attach(self, student: nn.Module, teacher: nn.Module) -> None:
        spec = self.require_spec("dml")
        archs = self.config.peers or [spec.arch]
        peers = [create_model(arch, spec.num_classes, spec.small_input) for arch in archs]
        self.peers = nn.ModuleList(peers).to(model_device(student))
        self.detach()
        self._handle = student.register_forward_pre_hook(self._capture)

    def _capture(self, student: nn.Module, args: tuple) -> None:
        self._batch, self._student_training = args[0], student.training

    def detach(self) -> None:
        if self._handle is not None:
            self._handle.remove()
        self._handle, self._batch = None, None

    def forward(self, student: torch.Tensor, teacher: torch.Tensor | None, target: torch.Tensor) -> torch.Tensor:
        c, t, x = self.config, self.config.temperature, self._batch
        if x is None or len(x) != len(student):
            raise EdgekdError(
                "dml: attach(student, teacher), then run the student on the batch: the peers see its input"
            )
        self._batch = None  # the peers run once per student forward
        logits = [student]
        for peer in self.peers:
            peer.train(self._student_training)
            logits.append(peer(x))
        losses = []
        for k, z in enumerate(logits):
            others = torch.stack([soft_kl(z, o.detach(), t) for j, o in enumerate(logits) if j != k])
            loss = self.ce(z, target) + c.mutual_weight * others.mean()
            if self.uses_teacher:
                loss = loss + c.kd_weight * soft_kl(z, teacher, t)
            losses.append(loss)
        return torch.stack(losses).sum()

    def for_finetuning(self) -> DistillLoss:
        return ce_plus_kd(self.config.kd_weight, self.config.temperature, self.config.label_smoothing)
