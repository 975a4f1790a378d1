namespace Storage.Nbd.Tests;

/// <summary>
/// Tests that need a system component skip with the reason when it is absent — except in CI
/// (CI=true), where .ci/run installs everything and a missing piece is a failure.
/// </summary>
internal static class Requires
{
    public static bool InCi => string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase);

    /// <summary>An executable on PATH; returns its full path.</summary>
    public static string Tool(string name, string package)
    {
        var path = Environment.GetEnvironmentVariable("PATH") ?? "";
        foreach (var directory in path.Split(':', StringSplitOptions.RemoveEmptyEntries).Concat(["/sbin", "/usr/sbin"]))
        {
            string candidate = Path.Combine(directory, name);
            if (File.Exists(candidate))
                return candidate;
        }
        Missing($"{name} is not installed (Debian package {package})");
        return null!;
    }

    public static void Missing(string reason)
    {
        if (InCi)
            Assert.Fail($"CI must provide this: {reason}");
        Assert.Skip(reason);
    }
}
