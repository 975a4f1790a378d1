using System.Reflection;
using System.Runtime.CompilerServices;

namespace Storage.Parity.Tests;

/// <summary>
/// Kernel loops are compiled fully optimised on first use. Without it a short command (storage bench parity, a scrub of
/// a small array, the first seconds of a rebuild) ran tier-0 code and measured or ran at about half speed, and the first
/// kernel set measured was always the slowest.
/// </summary>
public sealed class KernelTieringTests
{
    [Fact]
    public void Every_kernel_loop_skips_tier_0()
    {
        var kernels = typeof(KernelSet).Assembly.GetTypes()
            .Where(t => t.Namespace == "Storage.Parity.Kernels" && t.IsAbstract && t.IsSealed)   // static classes: one kernel per ISA
            .ToArray();
        Assert.True(kernels.Length >= 15, $"found only {kernels.Length} kernel classes");
        var loops = kernels
            .SelectMany(t => t.GetMethods(BindingFlags.Static | BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.DeclaredOnly))
            .Where(m => m.Name == "Run" || (m.Name.StartsWith("Dot", StringComparison.Ordinal) && m.Name.Length == 4))
            .ToArray();
        Assert.NotEmpty(loops);
        var tiered = loops.Where(m => !m.MethodImplementationFlags.HasFlag(MethodImplAttributes.AggressiveOptimization))
            .Select(m => $"{m.DeclaringType!.Name}.{m.Name}").ToArray();
        Assert.True(tiered.Length == 0, $"kernel loops without AggressiveOptimization: {string.Join(", ", tiered)}");
    }
}
