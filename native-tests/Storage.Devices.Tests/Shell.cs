using System.Diagnostics;

namespace Storage.Devices.Tests;

/// <summary>Runs system and client tools (losetup, mkfs.ext4, mount, nbdinfo, qemu-img, fio, …) for interop tests.</summary>
internal static class Shell
{
    public static (int ExitCode, string Output, string Error) Run(string program, params string[] arguments)
        => RunAsync(program, arguments).GetAwaiter().GetResult();

    /// <summary>Runs a tool that must succeed; returns its standard output.</summary>
    public static string Check(string program, params string[] arguments)
        => CheckAsync(program, arguments).GetAwaiter().GetResult();

    public static async Task<(int ExitCode, string Output, string Error)> RunAsync(string program, IEnumerable<string> arguments, int timeoutSeconds = 60)
    {
        var start = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var argument in arguments)
            start.ArgumentList.Add(argument);
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {program}");
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(timeoutSeconds));
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{program} {string.Join(' ', arguments)} did not finish in {timeoutSeconds} s");
        }
        return (process.ExitCode, (await output).Trim(), (await error).Trim());
    }

    /// <summary>Runs a tool that must succeed; returns its standard output.</summary>
    public static async Task<string> CheckAsync(string program, params string[] arguments)
    {
        var (code, output, error) = await RunAsync(program, arguments);
        Assert.True(code == 0, $"{program} {string.Join(' ', arguments)} exited with {code}:\n{error}\n{output}");
        return output;
    }
}
