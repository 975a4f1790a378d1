using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

namespace Storage.Parity.Tests;

public class KernelRegistryTests
{
    [Fact]
    public void Available_sets_are_supported_in_priority_order_and_end_with_scalar()
    {
        var names = KernelSets.Available.Select(s => s.Name).ToArray();
        TestContext.Current.TestOutputHelper?.WriteLine(
            $"{RuntimeInformation.ProcessArchitecture}: available [{string.Join(", ", names)}], default {KernelSets.Default.Name}");
        Assert.Equal("scalar", names[^1]);
        Assert.All(KernelSets.Available, s => Assert.True(s.IsSupported));
        var order = KernelSets.All.Select(s => s.Name).ToList();
        Assert.Equal(names, names.OrderBy(order.IndexOf));
    }

    [Fact]
    public void A_set_can_be_forced_by_name_and_bad_names_say_what_exists()
    {
        Assert.Same(KernelSets.Scalar, KernelSets.Resolve("SCALAR"));
        Assert.Same(KernelSets.Available[0], KernelSets.Resolve(null));
        var e = Assert.Throws<ParityConfigurationException>(() => KernelSets.Get("avx9000"));
        Assert.Contains("avx2", e.Message, StringComparison.Ordinal);
        var unsupported = KernelSets.All.FirstOrDefault(s => !s.IsSupported);
        if (unsupported is not null)
            Assert.Throws<ParityConfigurationException>(() => KernelSets.Get(unsupported.Name));
    }

    [Fact]
    public void The_environment_variable_picks_the_default()
    {
        string? forced = Environment.GetEnvironmentVariable(KernelSets.EnvironmentVariable);
        if (string.IsNullOrWhiteSpace(forced))
            Assert.Same(KernelSets.Available[0], KernelSets.Default);
        else
            Assert.Equal(forced, KernelSets.Default.Name, ignoreCase: true);
    }

    /// <summary>CI runs the suite again under the runtime's ISA switches; this checks they took effect.</summary>
    [Fact]
    public void Runtime_isa_switches_take_effect()
    {
        var names = KernelSets.Available.Select(s => s.Name).ToArray();
        if (Environment.GetEnvironmentVariable("DOTNET_EnableHWIntrinsic") == "0")
        {
            Assert.False(Vector128.IsHardwareAccelerated);
            Assert.Equal(["scalar"], names);
        }
        if (Environment.GetEnvironmentVariable("DOTNET_EnableAVX2") == "0")
        {
            Assert.False(Avx2.IsSupported);
            Assert.DoesNotContain("avx2", names);
            Assert.DoesNotContain("avx512bw", names);
        }
        if (Environment.GetEnvironmentVariable("DOTNET_EnableSSE42") == "0")
        {
            Assert.False(Sse42.IsSupported);
            Assert.False(Ssse3.IsSupported);
            Assert.Equal(["scalar"], names);
        }
        if (RuntimeInformation.ProcessArchitecture == Architecture.Arm64 && Environment.GetEnvironmentVariable("DOTNET_EnableHWIntrinsic") != "0")
        {
            Assert.True(AdvSimd.Arm64.IsSupported);
            Assert.Contains("vector128", names);
        }
    }
}
