"""Writes the standard workload model files (mlp, lenet5, vgg16, resnet18) in NNTrainer INI.

The files are committed; this script is how they were made and how to remake them:
``python examples/make_workload_inis.py``. VGG-16 and ResNet-18 are the CIFAR-style
variants (3x32x32 input, 100 classes) used by the planner and speed benchmarks.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent

HEADER = """# {title}
# Made by examples/make_workload_inis.py; SGD with momentum 0.9 as in the benchmarks.

[Model]
type = NeuralNetwork
loss = cross
batch_size = {batch}
epochs = 1

[Optimizer]
type = sgd
learning_rate = 0.01
momentum = 0.9
"""


def section(name: str, **keys: object) -> str:
    lines = [f"[{name}]"] + [f"{k} = {v}" for k, v in keys.items()]
    return "\n".join(lines) + "\n"


def mlp() -> str:
    parts = [HEADER.format(title="MLP 784-1024-1024-10", batch=64)]
    parts.append(section("input", type="input", input_shape="1:1:784"))
    parts.append(section("fc1", type="fully_connected", unit=1024, activation="relu"))
    parts.append(section("fc2", type="fully_connected", unit=1024, activation="relu"))
    parts.append(section("fc3", type="fully_connected", unit=10, activation="softmax"))
    return "\n".join(parts)


def lenet5() -> str:
    parts = [HEADER.format(title="LeNet-5 on 1x28x28", batch=32)]
    parts.append(section("input", type="input", input_shape="1:28:28"))
    parts.append(section("conv1", type="conv2d", filters=6, kernel_size="5,5", padding="2,2", activation="relu"))
    parts.append(section("pool1", type="pooling2d", pooling="max", pool_size="2,2", stride="2,2"))
    parts.append(section("conv2", type="conv2d", filters=16, kernel_size="5,5", activation="relu"))
    parts.append(section("pool2", type="pooling2d", pooling="max", pool_size="2,2", stride="2,2"))
    parts.append(section("flatten", type="flatten"))
    parts.append(section("fc1", type="fully_connected", unit=120, activation="relu"))
    parts.append(section("fc2", type="fully_connected", unit=84, activation="relu"))
    parts.append(section("fc3", type="fully_connected", unit=10, activation="softmax"))
    return "\n".join(parts)


def conv_bn_relu(parts: list[str], name: str, filters: int, source: str, stride: int = 1) -> str:
    parts.append(
        section(
            name,
            type="conv2d",
            input_layers=source,
            filters=filters,
            kernel_size="3,3",
            stride=f"{stride},{stride}",
            padding="1,1",
            disable_bias="true",
        )
    )
    parts.append(section(f"{name}_bn", type="batch_normalization", input_layers=name, activation="relu"))
    return f"{name}_bn"


def vgg16(batch: int = 32) -> str:
    parts = [HEADER.format(title="VGG-16 with batch norm, CIFAR-style 3x32x32, 100 classes", batch=batch)]
    parts.append(section("input", type="input", input_shape="3:32:32"))
    source = "input"
    plan = [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]]
    for block, widths in enumerate(plan, start=1):
        for i, width in enumerate(widths, start=1):
            source = conv_bn_relu(parts, f"conv{block}_{i}", width, source)
        parts.append(section(f"pool{block}", type="pooling2d", input_layers=source, pooling="max", pool_size="2,2", stride="2,2"))
        source = f"pool{block}"
    parts.append(section("flatten", type="flatten", input_layers=source))
    parts.append(section("fc1", type="fully_connected", unit=512, activation="relu"))
    parts.append(section("fc2", type="fully_connected", unit=512, activation="relu"))
    parts.append(section("fc3", type="fully_connected", unit=100, activation="softmax"))
    return "\n".join(parts)


def resnet18(batch: int = 32) -> str:
    parts = [HEADER.format(title="ResNet-18, CIFAR-style 3x32x32, 100 classes", batch=batch)]
    parts.append(section("input", type="input", input_shape="3:32:32"))
    source = conv_bn_relu(parts, "stem", 64, "input")
    in_width = 64
    for stage, width in enumerate([64, 128, 256, 512], start=1):
        for block in (1, 2):
            name = f"s{stage}b{block}"
            stride = 2 if stage > 1 and block == 1 else 1
            a = conv_bn_relu(parts, f"{name}_a", width, source, stride)
            parts.append(section(f"{name}_b", type="conv2d", input_layers=a, filters=width, kernel_size="3,3", padding="1,1", disable_bias="true"))
            parts.append(section(f"{name}_b_bn", type="batch_normalization", input_layers=f"{name}_b"))
            shortcut = source
            if stride != 1 or in_width != width:
                parts.append(section(f"{name}_down", type="conv2d", input_layers=source, filters=width, kernel_size="1,1", stride=f"{stride},{stride}", disable_bias="true"))
                parts.append(section(f"{name}_down_bn", type="batch_normalization", input_layers=f"{name}_down"))
                shortcut = f"{name}_down_bn"
            parts.append(section(f"{name}_add", type="addition", input_layers=f"{name}_b_bn, {shortcut}", activation="relu"))
            source = f"{name}_add"
            in_width = width
    parts.append(section("avgpool", type="pooling2d", input_layers=source, pooling="global_average"))
    parts.append(section("flatten", type="flatten", input_layers="avgpool"))
    parts.append(section("fc", type="fully_connected", unit=100, activation="softmax"))
    return "\n".join(parts)


def main() -> None:
    for name, text in {"mlp": mlp(), "lenet5": lenet5(), "vgg16": vgg16(), "resnet18": resnet18()}.items():
        (HERE / f"{name}.ini").write_text(text)
        print(f"wrote examples/{name}.ini")


if __name__ == "__main__":
    main()
