"""Teacher files that do not fit the data or are not what their name says: one line naming
the file and the fix."""

from __future__ import annotations

import pytest
import torch

from edgekd.errors import EdgekdError
from edgekd.models import create_model
from edgekd.training.teachers import TeacherConfig, load_teacher
from tests.helpers import (
    CLASSES,
    assert_nothing_written,
    assert_one_line_error,
    build_with,
    edgekd,
    onnx_teacher,
    tiny_net,
)


def test_onnx_teacher_with_the_wrong_input_shape(tmp_path, image_folder):
    teacher = onnx_teacher(tmp_path / "teacher.onnx", size=32)
    done = build_with(teacher, image_folder, tmp_path / "out", run=edgekd)  # the default input_size is 16
    assert_one_line_error(done, str(teacher), "takes 32x32 images", "input_size = 32")
    assert_nothing_written(tmp_path / "out")


def test_onnx_teacher_class_names_differ_from_the_class_folders(tmp_path, image_folder):
    teacher = onnx_teacher(tmp_path / "teacher.onnx", size=16, classes=["class_0", "class_2", "class_1"])
    done = build_with(teacher, image_folder, tmp_path / "out")
    assert_one_line_error(done, str(teacher), "class 1 'class_2'", "class folder 1 is 'class_1'", "rename")
    assert_nothing_written(tmp_path / "out")


def test_onnx_renamed_to_pt_is_named_for_what_it_is(tmp_path, image_folder):
    teacher = onnx_teacher(tmp_path / "teacher.onnx", size=16).rename(tmp_path / "teacher.pt")
    done = build_with(teacher, image_folder, tmp_path / "out")
    assert_one_line_error(done, str(teacher), "is an ONNX model, not a torch.save file", "rename it to teacher.onnx")
    assert_nothing_written(tmp_path / "out")


def test_whole_pickled_model_asks_for_a_state_dict(tmp_path, image_folder):
    teacher = tmp_path / "teacher.pt"
    torch.save(create_model("resnet18", 3, small_input=True), teacher)
    done = build_with(teacher, image_folder, tmp_path / "out")
    assert_one_line_error(done, str(teacher), "pickled Python object", "model.state_dict()")
    assert_nothing_written(tmp_path / "out")


def test_state_dict_renamed_to_pt2(tmp_path):
    teacher = tmp_path / "teacher.pt2"
    torch.save(tiny_net().state_dict(), teacher)
    with pytest.raises(EdgekdError, match="is a torch.save file, not a torch.export program; rename it to teacher.pt"):
        load_teacher(TeacherConfig(path=teacher), 3, 16, CLASSES)


@pytest.mark.parametrize("holder", ["classes", "preprocessing"])
def test_checkpoint_class_names_are_compared(tmp_path, holder):
    state = create_model("resnet18", 3, small_input=True).state_dict()
    names = ["cat", "dog", "eel"]
    teacher = tmp_path / "teacher.pt"
    torch.save(
        {"model": state, **({"classes": names} if holder == "classes" else {"preprocessing": {"classes": names}})},
        teacher,
    )
    with pytest.raises(EdgekdError, match=r"calls class 0 'cat' but the data's class folder 0 is 'class_0'"):
        load_teacher(TeacherConfig(path=teacher), 3, 16, CLASSES)
    assert load_teacher(TeacherConfig(path=teacher), 3, 16, names) is not None


def test_matching_onnx_class_names_load_and_a_fixed_batch_of_one_runs_image_by_image(tmp_path):
    teacher = onnx_teacher(tmp_path / "teacher.onnx", size=16, classes=CLASSES)  # exported with batch 1
    images = torch.randn(5, 3, 16, 16)
    logits = load_teacher(TeacherConfig(path=teacher), 3, 16, CLASSES)(images)
    assert logits.shape == (5, 3)
    assert torch.allclose(logits[3], load_teacher(TeacherConfig(path=teacher), 3, 16)(images[3:4])[0])


@pytest.mark.parametrize("suffix, kind", [(".onnx", "an ONNX model"), (".pt2", "a torch.export program")])
def test_feature_loss_with_a_teacher_without_layers_stops_before_any_work(tmp_path, image_folder, suffix, kind):
    config = tmp_path / "at.toml"
    config.write_text("[distill]\nloss = 'at'\nparams = { pairs = [['features.3', 'layer1']] }\n")
    teacher = tmp_path / f"teacher{suffix}"
    teacher.write_bytes(b"")  # never read: the config check comes first
    done = edgekd(
        "build", "--target", "x86", "--data", str(image_folder), "--teacher", str(teacher),
        "--config", str(config), "--out", str(tmp_path / "out"),
    )  # fmt: skip
    assert_one_line_error(done, str(config), "loss 'at' reads the teacher's layers", kind, "state_dict teacher (.pt)")
    assert_nothing_written(tmp_path / "out")


def test_feature_loss_names_an_onnx_teacher_from_python(tmp_path):
    from edgekd.losses import create_loss
    from edgekd.training.teachers import OnnxTeacher

    loss = create_loss("fitnet", {"pairs": [["0", "0"]]})
    with pytest.raises(EdgekdError, match="teacher is an ONNX model run by onnxruntime, which has no layers to hook"):
        loss.attach(tiny_net(), OnnxTeacher(onnx_teacher(tmp_path / "t.onnx", size=16)))
