namespace Storage.Devices.Tests;

/// <summary>
/// Tests that need a system component skip with the reason when it is absent — except in CI
/// (CI=true), where .ci/run installs everything and a missing piece is a failure.
/// </summary>
internal static class Requires
{
    public static bool InCi => string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase);

    /// <summary>Loop devices: root, /dev/loop-control and losetup.</summary>
    public static void LoopDevices()
    {
        if (!OperatingSystem.IsLinux())
            Missing("loop devices need Linux");
        if (!Environment.IsPrivilegedProcess)
            Missing("loop devices need root (losetup, O_EXCL opens of /dev/loopN)");
        if (!File.Exists("/dev/loop-control"))
            Missing("/dev/loop-control is absent (no loop driver, or a container without it)");
        Tool("losetup");
    }

    /// <summary>An executable on PATH.</summary>
    public static void Tool(string name)
    {
        var path = Environment.GetEnvironmentVariable("PATH") ?? "";
        foreach (var directory in path.Split(':', StringSplitOptions.RemoveEmptyEntries).Concat(["/sbin", "/usr/sbin"]))
        {
            if (File.Exists(Path.Combine(directory, name)))
                return;
        }
        Missing($"{name} is not installed");
    }

    public static void Missing(string reason)
    {
        if (InCi)
            Assert.Fail($"CI must provide this: {reason}");
        Assert.Skip(reason);
    }
}
