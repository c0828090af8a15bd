"""Kotlin for an Android app that ships the LiteRT artifact, with LiteRT's Interpreter API
(int8 in and out when the model is fully int8: the tensors' own scales are read at run time).

Kotlin cannot read edgekd's metadata from the .tflite without the flatbuffer schema's
generated classes, so the values (classes, input size, scale, mean, std) are written into the
code from the artifact's metadata when the report is made: the code says to copy it again after
retraining. Layout and channel order choose the indexing. Android's `createScaledBitmap` with
filtering is bilinear; a model trained with bicubic resizing gets a comment saying so.
"""

from __future__ import annotations

import json

from edgekd.formats.base import Preprocessing

LITERT_AAR = "com.google.ai.edge.litert:litert:1.4.1"  # the Interpreter API (org.tensorflow.lite)


def _floats(values) -> str:
    return ", ".join(f"{float(v)!r}f" for v in values)


def _string(text: str) -> str:
    return json.dumps(text).replace("$", "\\$")  # JSON's escapes are Kotlin's, but for `$` templates


def kotlin_litert(pre: Preprocessing, asset: str) -> str:
    """Kotlin that classifies a Bitmap with the .tflite whose metadata is `pre`, shipped as assets/`asset`."""
    height, width = pre.input_size
    rgb = "intArrayOf(p shr 16 and 0xFF, p shr 8 and 0xFF, p and 0xFF)"
    if pre.channel_order == "BGR":
        rgb = "intArrayOf(p and 0xFF, p shr 8 and 0xFF, p shr 16 and 0xFF)  // the model takes BGR"
    index = "c * plane + i" if pre.layout == "NCHW" else "i * 3 + c"
    resize = "bilinear, as training resized"
    if pre.resize == "bicubic":
        resize = "bilinear: training resized bicubic, which Android's Bitmap does not offer"
    classes = ",\n    ".join(_string(name) for name in pre.classes)
    return "\n".join(
        [
            f'// build.gradle.kts: implementation("{LITERT_AAR}")',
            f"// copy the .tflite to app/src/main/assets/{asset}",
            "import android.content.Context",
            "import android.graphics.Bitmap",
            "import java.io.FileInputStream",
            "import java.nio.ByteBuffer",
            "import java.nio.ByteOrder",
            "import java.nio.channels.FileChannel",
            "import kotlin.math.exp",
            "import kotlin.math.roundToInt",
            "import org.tensorflow.lite.DataType",
            "import org.tensorflow.lite.Interpreter",
            "",
            f"// from {asset}'s edgekd metadata when this report was written: copy again after retraining",
            f"val CLASSES = listOf(\n    {classes},\n)",
            f"const val WIDTH = {width}",
            f"const val HEIGHT = {height}",
            f"const val SCALE = {float(pre.scale)!r}f",
            f"val MEAN = floatArrayOf({_floats(pre.mean)})",
            f"val STD = floatArrayOf({_floats(pre.std)})",
            "",
            "/** ARGB pixels of a WIDTH x HEIGHT image, row by row, as the model's input. */",
            "fun toInput(argb: IntArray): FloatArray {",
            "    val plane = WIDTH * HEIGHT",
            "    val x = FloatArray(3 * plane)",
            "    for (i in 0 until plane) {",
            "        val p = argb[i]",
            f"        val rgb = {rgb}",
            f"        for (c in 0 until 3) x[{index}] = (rgb[c] * SCALE - MEAN[c]) / STD[c]  // {pre.layout}",
            "    }",
            "    return x",
            "}",
            "",
            "class StudentClassifier(context: Context) {",
            f'    private val interpreter = context.assets.openFd("{asset}").use {{ fd ->',
            "        val model = FileInputStream(fd.fileDescriptor).channel",
            "            .map(FileChannel.MapMode.READ_ONLY, fd.startOffset, fd.declaredLength)",
            "        Interpreter(model, Interpreter.Options().setNumThreads(2))",
            "    }",
            "",
            "    /** The class and its probability for an upright RGB bitmap (apply a photo's EXIF rotation first). */",
            "    fun classify(bitmap: Bitmap): Pair<String, Float> {",
            f"        val scaled = Bitmap.createScaledBitmap(bitmap, WIDTH, HEIGHT, true)  // {resize}",
            "        val argb = IntArray(WIDTH * HEIGHT)",
            "        scaled.getPixels(argb, 0, WIDTH, 0, 0, WIDTH, HEIGHT)",
            "        val x = toInput(argb)",
            "        val inTensor = interpreter.getInputTensor(0)",
            "        val input = ByteBuffer.allocateDirect(inTensor.numBytes()).order(ByteOrder.nativeOrder())",
            "        if (inTensor.dataType() == DataType.INT8) {  // a fully int8 model: int8 in its input's scale",
            "            val q = inTensor.quantizationParams()",
            "            for (v in x) input.put((v / q.scale + q.zeroPoint).roundToInt().coerceIn(-128, 127).toByte())",
            "        } else {",
            "            for (v in x) input.putFloat(v)",
            "        }",
            "        val outTensor = interpreter.getOutputTensor(0)",
            "        val output = ByteBuffer.allocateDirect(outTensor.numBytes()).order(ByteOrder.nativeOrder())",
            "        input.rewind()",
            "        interpreter.run(input, output)",
            "        output.rewind()",
            "        val q = outTensor.quantizationParams()",
            "        val int8 = outTensor.dataType() == DataType.INT8",
            "        val logits = FloatArray(CLASSES.size) {",
            "            if (int8) (output.get() - q.zeroPoint) * q.scale else output.getFloat()",
            "        }",
            "        val top = logits.indices.maxByOrNull { logits[it] }!!",
            "        val total = logits.sumOf { exp((it - logits[top]).toDouble()) }",
            "        return CLASSES[top] to (1.0 / total).toFloat()",
            "    }",
            "}",
            "",
        ]
    )
