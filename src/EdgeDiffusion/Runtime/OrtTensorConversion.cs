using System.Text;
using EdgeDiffusion.Onnx;
using EdgeDiffusion.Onnx.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace EdgeDiffusion.Runtime;

/// <summary>Turns ONNX TensorProto values (test data, initializers) into ONNX Runtime OrtValues. The caller disposes the result.</summary>
public static class OrtTensorConversion
{
    /// <summary>An OrtValue owning a copy of the tensor's values, in ONNX Runtime's default CPU allocator.</summary>
    public static OrtValue ToOrtValue(TensorProto tensor, ExternalDataFiles? external = null, string file = "")
    {
        long[] shape = tensor.Dims.ToArray();
        if (tensor.DataType == (int)TensorProto.Types.DataType.String)
        {
            var strings = OrtValue.CreateTensorWithEmptyStrings(OrtAllocator.DefaultInstance, shape);
            try
            {
                for (int i = 0; i < tensor.StringData.Count; i++)
                    strings.StringTensorSetElementAt(tensor.StringData[i].Span, i);
                return strings;
            }
            catch { strings.Dispose(); throw; }
        }
        byte[] raw = TensorData.ReadRawBytes(tensor, external, file);
        var value = OrtValue.CreateAllocatedTensorValue(OrtAllocator.DefaultInstance, (TensorElementType)tensor.DataType, shape);
        try
        {
            var destination = value.GetTensorMutableRawData();
            if (destination.Length != raw.Length)
                throw ExternalDataFiles.Problem(file, tensor, $"holds {raw.Length} bytes where ONNX Runtime expects {destination.Length}");
            raw.CopyTo(destination);
            return value;
        }
        catch { value.Dispose(); throw; }
    }

    /// <summary>A short description of a value's type and shape, for messages.</summary>
    public static string Describe(OrtValue value)
    {
        if (!value.IsTensor) return value.OnnxType.ToString();
        var info = value.GetTensorTypeAndShape();
        var sb = new StringBuilder();
        sb.Append(info.ElementDataType).Append('[').AppendJoin(',', info.Shape).Append(']');
        return sb.ToString();
    }
}
