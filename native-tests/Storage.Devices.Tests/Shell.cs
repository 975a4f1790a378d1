using System.Diagnostics;

namespace Storage.Devices.Tests;

/// <summary>Runs system tools (losetup, mkfs.ext4, mount) for interop tests.</summary>
internal static class Shell
{
    public static (int ExitCode, string Output, string Error) Run(string program, params string[] arguments)
    {
        var start = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var argument in arguments)
            start.ArgumentList.Add(argument);
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {program}");
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromSeconds(60)))
        {
            process.Kill();
            throw new TimeoutException($"{program} {string.Join(' ', arguments)} did not finish in 60 s");
        }
        return (process.ExitCode, output.Result.Trim(), error.Result.Trim());
    }

    /// <summary>Runs a tool that must succeed.</summary>
    public static string Check(string program, params string[] arguments)
    {
        var (code, output, error) = Run(program, arguments);
        Assert.True(code == 0, $"{program} {string.Join(' ', arguments)} exited with {code}: {error}");
        return output;
    }
}
