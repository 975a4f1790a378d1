using System.Diagnostics;

namespace Storage.Cli;

/// <summary>A system tool (losetup, mount, nbdfuse, mkfs) is missing or failed; the message says which and why.</summary>
internal sealed class ExternalToolException(string message) : Exception(message);

/// <summary>Runs the system tools that mounting needs.</summary>
internal static class ExternalTools
{
    private static readonly string[] Directories = [.. (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries), "/sbin", "/usr/sbin", "/usr/bin", "/bin"];

    /// <summary>The full path of a tool, or an exception naming the Debian package that has it.</summary>
    public static string Require(string tool, string package)
        => Directories.Select(d => Path.Combine(d, tool)).FirstOrDefault(File.Exists)
           ?? throw new ExternalToolException($"{tool} is not installed; install it with: apt-get install {package}");

    /// <summary>Runs a tool to completion; a non-zero exit throws with its error output.</summary>
    public static string Run(string tool, string package, params string[] args)
    {
        var start = new ProcessStartInfo(Require(tool, package)) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in args)
            start.ArgumentList.Add(arg);
        using var process = Process.Start(start) ?? throw new ExternalToolException($"{tool} did not start.");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromMinutes(10)))
        {
            process.Kill(entireProcessTree: true);
            throw new ExternalToolException($"{tool} {string.Join(' ', args)} did not finish in 10 minutes.");
        }
        if (process.ExitCode != 0)
            throw new ExternalToolException($"{tool} {string.Join(' ', args)} failed (exit {process.ExitCode}): {stderr.Result.Trim()}");
        return stdout.Result.Trim();
    }

    /// <summary>Starts a long-running tool in the background with its output in <paramref name="log"/>.</summary>
    public static Process Start(string executable, IEnumerable<string> args, string log)
    {
        var start = new ProcessStartInfo(executable) { RedirectStandardOutput = false, RedirectStandardError = false, UseShellExecute = false };
        start.ArgumentList.Add("-c");
        start.ArgumentList.Add("exec \"$0\" \"$@\" >>\"$STORAGE_LOG\" 2>&1 </dev/null");
        start.FileName = "/bin/sh";
        start.ArgumentList.Add(executable);
        foreach (var arg in args)
            start.ArgumentList.Add(arg);
        start.Environment["STORAGE_LOG"] = log;
        return Process.Start(start) ?? throw new ExternalToolException($"{executable} did not start.");
    }

    /// <summary>Waits for a condition, failing with <paramref name="what"/> after <paramref name="timeout"/>.</summary>
    public static void WaitFor(Func<bool> condition, TimeSpan timeout, string what, Process? process = null, string? log = null)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            if (process is { HasExited: true })
                throw new ExternalToolException($"{what}: the process exited (code {process.ExitCode}).{(log is not null && File.Exists(log) ? " Its output: " + File.ReadAllText(log).Trim() : "")}");
            if (clock.Elapsed > timeout)
                throw new ExternalToolException($"{what}: timed out after {timeout.TotalSeconds:0} s.{(log is not null && File.Exists(log) ? " Output: " + File.ReadAllText(log).Trim() : "")}");
            Thread.Sleep(50);
        }
    }
}
