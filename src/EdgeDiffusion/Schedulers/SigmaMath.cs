namespace EdgeDiffusion.Schedulers;

/// <summary>σ-space helpers shared by Euler and DPM++ (the k-diffusion view: x/√ᾱ = x_0 + σ ε, σ = √((1 − ᾱ)/ᾱ)).</summary>
internal static class SigmaMath
{
    /// <summary>The σ table of every training timestep.</summary>
    public static double[] Table(NoiseSchedule schedule)
    {
        var sigmas = new double[schedule.Length];
        for (int t = 0; t < sigmas.Length; t++) sigmas[t] = schedule.Sigma(t);
        return sigmas;
    }

    /// <summary>numpy.interp(t, arange(len), table): σ at a fractional timestep, linear between neighbours, clamped at the ends.</summary>
    public static double Interpolate(double[] table, double t)
    {
        if (t <= 0) return table[0];
        if (t >= table.Length - 1) return table[^1];
        int i = (int)Math.Floor(t);
        double frac = t - i;
        return frac == 0 ? table[i] : table[i] + (table[i + 1] - table[i]) * frac;
    }

    /// <summary>
    /// Karras et al. 2022 (eq. 5), ρ = 7: σ_i = (σ_max^(1/ρ) + i/(n−1) · (σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ for i = 0..n−1,
    /// so σ_0 = σ_max and σ_{n−1} = σ_min, dense near σ_min where detail forms.
    /// </summary>
    public static double[] Karras(double sigmaMax, double sigmaMin, int n)
    {
        const double rho = 7.0;
        double maxInv = Math.Pow(sigmaMax, 1 / rho), minInv = Math.Pow(sigmaMin, 1 / rho);
        var ramp = TimestepGrid.Linspace(0, 1, n);
        var sigmas = new double[n];
        for (int i = 0; i < n; i++) sigmas[i] = Math.Pow(maxInv + ramp[i] * (minInv - maxInv), rho);
        return sigmas;
    }

    /// <summary>
    /// The (fractional) timestep whose σ is <paramref name="sigma"/>: linear interpolation of t in ln σ between the two
    /// table entries around it (diffusers' _sigma_to_t); clamped to [0, N−1].
    /// </summary>
    public static double SigmaToT(double sigma, double[] logSigmas)
    {
        if (logSigmas.Length < 2) return 0;
        double logSigma = Math.Log(Math.Max(sigma, 1e-10));
        // low = the last index whose ln σ is ≤ ln sigma (0 when none), kept below N−1 so that high = low + 1 exists.
        int low = 0;
        for (int i = 0; i < logSigmas.Length; i++)
            if (logSigma - logSigmas[i] >= 0) low = i;
        low = Math.Min(low, logSigmas.Length - 2);
        double lo = logSigmas[low], hi = logSigmas[low + 1];
        double w = Math.Clamp((lo - logSigma) / (lo - hi), 0, 1);
        return (1 - w) * low + w * (low + 1);
    }

    /// <summary>ln of every table entry.</summary>
    public static double[] Log(double[] table)
    {
        var logs = new double[table.Length];
        for (int i = 0; i < logs.Length; i++) logs[i] = Math.Log(table[i]);
        return logs;
    }
}
