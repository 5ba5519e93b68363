namespace EdgeDiffusion.Schedulers;

/// <summary>
/// Timestep lists as diffusers computes them with numpy, reproduced operation for operation so that rounding
/// (numpy rounds halves to even, as <see cref="Math.Round(double)"/> does) lands on the same integers.
/// </summary>
internal static class TimestepGrid
{
    /// <summary>numpy.linspace: start + i·step with step = (stop − start)/div (div = num − 1, or num without endpoint); with endpoint the last value is stop exactly.</summary>
    public static double[] Linspace(double start, double stop, int num, bool endpoint = true)
    {
        var y = new double[num];
        int div = endpoint ? num - 1 : num;
        double step = div > 0 ? (stop - start) / div : 0;
        for (int i = 0; i < num; i++) y[i] = i * step + start;
        if (endpoint && num > 1) y[num - 1] = stop;
        return y;
    }

    /// <summary>
    /// The descending timesteps of DDIM, Euler and PNDM for <paramref name="steps"/> steps over <paramref name="n"/> training steps:
    /// linspace: linspace(0, n−1, steps), rounded only when <paramref name="roundLinspace"/> (Euler keeps the fractions);
    /// leading: i·(n div steps) + offset; trailing: round(n − i·n/steps) − 1.
    /// </summary>
    public static double[] Descending(TimestepSpacing spacing, int n, int steps, int stepsOffset, bool roundLinspace)
    {
        var t = new double[steps];
        switch (spacing)
        {
            case TimestepSpacing.Linspace:
                var grid = Linspace(0, n - 1, steps);
                for (int i = 0; i < steps; i++) t[i] = roundLinspace ? Math.Round(grid[steps - 1 - i]) : grid[steps - 1 - i];
                break;
            case TimestepSpacing.Leading:
                int ratio = n / steps;
                for (int i = 0; i < steps; i++) t[i] = (steps - 1 - i) * ratio + stepsOffset;
                break;
            case TimestepSpacing.Trailing:
                Trailing(n, n, steps, t);
                break;
        }
        return t;
    }

    /// <summary>
    /// round(np.arange(start, 0, −n/steps)) − 1. numpy fills arange as start + i·delta with delta = (start − step) − start;
    /// we take exactly <paramref name="steps"/> values, where numpy's float arange yields an extra near-zero entry (→ −1)
    /// for some counts (61 of 1000 steps, for example) — a diffusers quirk not worth reproducing.
    /// </summary>
    public static void Trailing(int start, int n, int steps, Span<double> destination)
    {
        double step = (double)n / steps;
        double delta = (start - step) - start;
        for (int i = 0; i < steps; i++) destination[i] = Math.Round(start + i * delta) - 1;
    }
}
