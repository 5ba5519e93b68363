using System.Security.Cryptography;
using System.Text;
using EdgeDiffusion.Onnx;
using EdgeDiffusion.Onnx.Protobuf;
using EdgeDiffusion.Runtime;
using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;

namespace EdgeDiffusion.Tests.Onnx;

public enum ConformanceOutcome { Passed, UnsupportedByOrt, Failed }

public sealed record ConformanceResult(string Model, ConformanceOutcome Outcome, string Detail, bool Nondeterministic = false);

/// <summary>
/// One ONNX backend test model through our reader and writer: load it, save it twice (inline; every initializer
/// external), and run all three copies in ONNX Runtime on test_data_set_0. The copies must give outputs bit-identical
/// to the original, or be rejected by ONNX Runtime with the same message.
/// </summary>
public static class BackendConformance
{
    public static ConformanceResult Check(string modelPath, string workDir)
    {
        string name = Path.GetRelativePath(TestData.OnnxBackendTestData, Path.GetDirectoryName(modelPath)!);
        try
        {
            using var original = OnnxModel.Load(modelPath);
            string inlinePath = Path.Combine(workDir, "inline", "model.onnx");
            string externalPath = Path.Combine(workDir, "external", "model.onnx");
            original.Save(inlinePath, OnnxSaveOptions.Inline);
            original.Save(externalPath, OnnxSaveOptions.External(thresholdBytes: 0));

            // The writer itself must be exact, whatever ONNX Runtime makes of the model.
            using (var inline = OnnxModel.Load(inlinePath))
                if (!inline.Proto.Equals(original.Proto))
                    return new(name, ConformanceOutcome.Failed, "inline copy differs from the original message");
            using (var external = OnnxModel.Load(externalPath))
            {
                var a = OnnxGraphs.AllInitializers(original.Graph).ToList();
                var b = OnnxGraphs.AllInitializers(external.Graph).ToList();
                if (a.Count != b.Count) return new(name, ConformanceOutcome.Failed, "external copy has a different number of initializers");
                for (int i = 0; i < a.Count; i++)
                {
                    if (a[i].DataType == (int)TensorProto.Types.DataType.String) continue;
                    if (!ExternalDataFiles.IsExternal(b[i]))
                        return new(name, ConformanceOutcome.Failed, $"initializer '{b[i].Name}' was not written external");
                    if (!original.ReadRawBytes(a[i]).AsSpan().SequenceEqual(external.ReadRawBytes(b[i])))
                        return new(name, ConformanceOutcome.Failed, $"initializer '{a[i].Name}' bytes differ after external round trip");
                }
            }

            string dataSet = Path.Combine(Path.GetDirectoryName(modelPath)!, "test_data_set_0");
            var reference = Run(modelPath, dataSet, original.Proto);
            var again = Run(modelPath, dataSet, original.Proto);
            bool nondeterministic = reference.Fingerprint != again.Fingerprint;
            foreach (var (copy, label) in new[] { (inlinePath, "inline"), (externalPath, "external") })
            {
                var outcome = Run(copy, dataSet, original.Proto);
                if (outcome.Error != reference.Error)
                    return new(name, ConformanceOutcome.Failed, $"{label}: ONNX Runtime said '{outcome.Error ?? "ok"}' but on the original '{reference.Error ?? "ok"}'");
                if (!nondeterministic && outcome.Fingerprint != reference.Fingerprint)
                    return new(name, ConformanceOutcome.Failed, $"{label}: outputs differ from the original's ({outcome.Summary} vs {reference.Summary})");
                if (nondeterministic && outcome.Summary != reference.Summary)
                    return new(name, ConformanceOutcome.Failed, $"{label}: output types/shapes differ ({outcome.Summary} vs {reference.Summary})");
            }
            return reference.Error is null
                ? new(name, ConformanceOutcome.Passed, reference.Summary, nondeterministic)
                : new(name, ConformanceOutcome.UnsupportedByOrt, reference.Error);
        }
        catch (Exception e)
        {
            return new(name, ConformanceOutcome.Failed, $"{e.GetType().Name}: {e.Message}");
        }
        finally
        {
            try { Directory.Delete(workDir, recursive: true); } catch (IOException) { }
        }
    }

    private sealed record RunOutcome(string? Error, string Fingerprint, string Summary);

    private static RunOutcome Run(string modelPath, string dataSet, ModelProto model)
    {
        string dir = Path.GetDirectoryName(Path.GetFullPath(modelPath))!;
        var inputs = new List<OrtValue>();
        var names = new List<string>();
        try
        {
            using var options = new SessionOptions { IntraOpNumThreads = 1, InterOpNumThreads = 1, LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_FATAL };
            InferenceSession session;
            try { session = new InferenceSession(modelPath, options); }
            catch (OnnxRuntimeException e) { return new(Normalize(e.Message, dir), "", ""); }
            using (session)
            {
                // ONNX Runtime's C# API cannot build some inputs (an empty sequence); that is its limit, the same for every copy.
                try { LoadInputs(dataSet, model, names, inputs); }
                catch (OnnxRuntimeException e) { return new("cannot create inputs: " + Normalize(e.Message, dir), "", ""); }
                using var runOptions = new RunOptions();
                IDisposableReadOnlyCollection<OrtValue> outputs;
                try { outputs = session.Run(runOptions, names, inputs, session.OutputNames); }
                catch (OnnxRuntimeException e) { return new(Normalize(e.Message, dir), "", ""); }
                using (outputs)
                {
                    using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
                    var summary = new StringBuilder();
                    foreach (var value in outputs) Fingerprint(value, hash, summary);
                    return new(null, Convert.ToHexString(hash.GetHashAndReset()), summary.ToString());
                }
            }
        }
        finally
        {
            foreach (var v in inputs) v.Dispose();
        }
    }

    private static string Normalize(string message, string dir) => message.Replace(dir, "<dir>").Split('\n')[0];

    /// <summary>Feeds input_N.pb in the order of the graph's inputs that are not initializers (names from the files where present).</summary>
    private static void LoadInputs(string dataSet, ModelProto model, List<string> names, List<OrtValue> values)
    {
        if (!Directory.Exists(dataSet)) return;
        var initializers = model.Graph.Initializer.Select(t => t.Name).ToHashSet();
        var graphInputs = model.Graph.Input.Where(i => !initializers.Contains(i.Name)).ToList();
        for (int i = 0; ; i++)
        {
            string file = Path.Combine(dataSet, $"input_{i}.pb");
            if (!File.Exists(file)) break;
            if (i >= graphInputs.Count) break;
            var input = graphInputs[i];
            byte[] bytes = File.ReadAllBytes(file);
            OrtValue? value = input.Type.ValueCase switch
            {
                TypeProto.ValueOneofCase.SequenceType => FromSequence(SequenceProto.Parser.ParseFrom(bytes)),
                TypeProto.ValueOneofCase.OptionalType => FromOptional(OptionalProto.Parser.ParseFrom(bytes)),
                _ => OrtTensorConversion.ToOrtValue(AsDeclaredType(TensorProto.Parser.ParseFrom(bytes), input.Type), null, file),
            };
            if (value is null) continue; // an empty optional is fed by leaving the input out
            names.Add(input.Name);
            values.Add(value);
        }
    }

    /// <summary>Old test sets store bfloat16 inputs as uint16 bit patterns; feed them as the type the graph declares.</summary>
    private static TensorProto AsDeclaredType(TensorProto tensor, TypeProto declared)
    {
        if (declared.TensorType is { HasElemType: true } t && t.ElemType != tensor.DataType
            && DataTypes.BitsPerElement(t.ElemType) == DataTypes.BitsPerElement(tensor.DataType) && tensor.HasRawData)
            tensor.DataType = t.ElemType;
        return tensor;
    }

    private static OrtValue FromSequence(SequenceProto sequence)
    {
        var items = sequence.TensorValues.Select(t => OrtTensorConversion.ToOrtValue(t)).ToList();
        try { return OrtValue.CreateSequence(items); }
        finally { foreach (var item in items) item.Dispose(); }
    }

    private static OrtValue? FromOptional(OptionalProto optional) =>
        optional.TensorValue is not null ? OrtTensorConversion.ToOrtValue(optional.TensorValue)
        : optional.SequenceValue is not null ? FromSequence(optional.SequenceValue)
        : null;

    private static void Fingerprint(OrtValue value, IncrementalHash hash, StringBuilder summary)
    {
        switch (value.OnnxType)
        {
            case OnnxValueType.ONNX_TYPE_TENSOR:
                summary.Append(OrtTensorConversion.Describe(value)).Append(' ');
                var info = value.GetTensorTypeAndShape();
                hash.AppendData(Encoding.UTF8.GetBytes(OrtTensorConversion.Describe(value)));
                if (info.ElementDataType == Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.String)
                    foreach (var s in value.GetStringTensorAsArray()) hash.AppendData(Encoding.UTF8.GetBytes(s + "\0"));
                else
                    hash.AppendData(value.GetTensorDataAsSpan<byte>());
                break;
            case OnnxValueType.ONNX_TYPE_SEQUENCE:
                int count = value.GetValueCount();
                summary.Append("seq(").Append(count).Append(")[");
                hash.AppendData(Encoding.UTF8.GetBytes($"seq{count}"));
                for (int i = 0; i < count; i++)
                {
                    using var item = value.GetValue(i, OrtAllocator.DefaultInstance);
                    Fingerprint(item, hash, summary);
                }
                summary.Append("] ");
                break;
            default:
                summary.Append(value.OnnxType).Append(' ');
                hash.AppendData(Encoding.UTF8.GetBytes(value.OnnxType.ToString()));
                break;
        }
    }
}
