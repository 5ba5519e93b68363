using EdgeDiffusion.Tests.Onnx;
using Microsoft.ML.OnnxRuntime;

namespace EdgeDiffusion.Tests.Architectures;

/// <summary>Runs a model file (external data included) or bytes in ONNX Runtime; feeds may also be int32 or float scalars.</summary>
internal static class SessionRunner
{
    public static Dictionary<string, Fetched> RunFile(string modelPath, params Feed[] feeds)
    {
        using var options = new SessionOptions { IntraOpNumThreads = 2, InterOpNumThreads = 1 };
        using var session = new InferenceSession(modelPath, options);
        return Run(session, feeds);
    }

    public static Dictionary<string, Fetched> RunBytes(byte[] model, params Feed[] feeds)
    {
        using var options = new SessionOptions { IntraOpNumThreads = 2, InterOpNumThreads = 1 };
        using var session = new InferenceSession(model, options);
        return Run(session, feeds);
    }

    private static Dictionary<string, Fetched> Run(InferenceSession session, Feed[] feeds)
    {
        var inputs = new List<OrtValue>();
        try
        {
            foreach (var f in feeds) inputs.Add(ToOrtValue(f));
            using var runOptions = new RunOptions();
            var names = session.OutputNames.ToArray();
            using var results = session.Run(runOptions, feeds.Select(f => f.Name).ToArray(), inputs, names);
            var fetched = new Dictionary<string, Fetched>();
            for (int k = 0; k < names.Length; k++)
            {
                var info = results[k].GetTensorTypeAndShape();
                var values = results[k].GetTensorDataAsSpan<float>().ToArray().Select(v => (double)v).ToArray();
                fetched[names[k]] = new Fetched(info.Shape, values, info.ElementDataType);
            }
            return fetched;
        }
        finally
        {
            foreach (var v in inputs) v.Dispose();
        }
    }

    private static OrtValue ToOrtValue(Feed f) => f.Values switch
    {
        float[] a => OrtValue.CreateTensorValueFromMemory(a, f.Shape),
        long[] a => OrtValue.CreateTensorValueFromMemory(a, f.Shape),
        int[] a => OrtValue.CreateTensorValueFromMemory(a, f.Shape),
        _ => throw new NotSupportedException($"input type {f.Values.GetType().Name}"),
    };

    public static void AssertFinite(Fetched fetched, string what)
    {
        for (int i = 0; i < fetched.Values.Length; i++)
            if (!double.IsFinite(fetched.Values[i])) Assert.Fail($"{what}: element {i} is {fetched.Values[i]}");
    }
}
