using System.Diagnostics;
using System.Text.Json;

namespace Storage.Cli.Tests;

/// <summary>
/// A scratch folder for tests that run the real <c>storage</c> executable and system tools (qemu-io, nbdinfo,
/// nbdfuse, losetup, mount): its own run directory, and whatever a failed test left running is killed afterwards.
/// </summary>
public abstract class RealTools : ScratchFolder
{
    private static readonly string[] ToolDirectories = ["/usr/bin", "/usr/sbin", "/bin", "/sbin"];

    protected string RunDir => At("run");

    /// <summary>Skips (fails with CI=true) unless every tool is installed, and root when <paramref name="root"/>.</summary>
    protected static void Require(string what, bool root, params string[] tools)
    {
        var missing = new List<string>();
        if (root && !Environment.IsPrivilegedProcess)
            missing.Add("root");
        if (root && !File.Exists("/dev/fuse"))
            missing.Add("/dev/fuse");
        if (root && !File.Exists("/dev/loop-control"))
            missing.Add("/dev/loop-control");
        foreach (var tool in tools)
        {
            if (!ToolDirectories.Any(d => File.Exists(Path.Combine(d, tool))))
                missing.Add(tool);
        }
        if (missing.Count == 0)
            return;
        string reason = $"{what} needs {string.Join(", ", missing)}";
        if (string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase))
            Assert.Fail($"CI must provide this: {reason}");
        Assert.Skip(reason);
    }

    /// <summary>The real executable; fails the test unless it exits 0.</summary>
    protected string Storage(params string[] args)
    {
        var (code, output, error) = StorageRaw(args);
        Assert.True(code == 0, $"storage {string.Join(' ', args)} exited {code}:\n{output}\n{error}");
        return output;
    }

    /// <summary>The real executable (mount starts storage serve as a separate process).</summary>
    protected (int Code, string Output, string Error) StorageRaw(params string[] args)
    {
        using var process = Process.Start(StartInfo(args))!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        Assert.True(process.WaitForExit(TimeSpan.FromMinutes(3)), $"storage {string.Join(' ', args)} hung");
        return (process.ExitCode, output.Result, error.Result);
    }

    /// <summary>Starts the real executable in the background (storage serve), its output to <paramref name="log"/>.</summary>
    protected Process StartStorage(string log, params string[] args) => StartStorage(log, new Dictionary<string, string>(), args);

    /// <summary>As <see cref="StartStorage(string, string[])"/>, with <paramref name="environment"/> added.</summary>
    protected Process StartStorage(string log, IReadOnlyDictionary<string, string> environment, params string[] args)
    {
        var start = new ProcessStartInfo("bash") { ArgumentList = { "-c", "exec \"$0\" \"$@\" >\"$STORAGE_TEST_LOG\" 2>&1", Executable } };
        foreach (var arg in args)
            start.ArgumentList.Add(arg);
        start.Environment["STORAGE_RUN_DIR"] = RunDir;
        start.Environment["STORAGE_TEST_LOG"] = log;
        foreach (var (name, value) in environment)
            start.Environment[name] = value;
        return Process.Start(start)!;
    }

    private static string Executable => Path.Combine(AppContext.BaseDirectory, "storage");

    private ProcessStartInfo StartInfo(string[] args)
    {
        var start = new ProcessStartInfo(Executable) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in args)
            start.ArgumentList.Add(arg);
        start.Environment["STORAGE_RUN_DIR"] = RunDir;
        return start;
    }

    /// <summary>A system tool; fails the test unless it exits 0.</summary>
    protected static string Run(string tool, params string[] args)
    {
        var (code, output) = RunRaw(tool, args);
        Assert.True(code == 0, $"{tool} {string.Join(' ', args)} exited {code}: {output}");
        return output;
    }

    protected static (int Code, string Output) RunRaw(string tool, params string[] args)
    {
        var start = new ProcessStartInfo(tool) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in args)
            start.ArgumentList.Add(arg);
        using var process = Process.Start(start)!;
        var error = process.StandardError.ReadToEndAsync();
        string output = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        return (process.ExitCode, output + error.Result);
    }

    /// <summary>The stale copies of <paramref name="volume"/> in the output of 'storage volume list --json'.</summary>
    protected static List<(string Pool, string State)> StaleCopies(string listJson, string volume)
    {
        using var listed = JsonDocument.Parse(listJson);
        var view = listed.RootElement.EnumerateArray().Single(v => v.GetProperty("name").GetString() == volume);
        return view.TryGetProperty("stale", out var stale) && stale.ValueKind == JsonValueKind.Array
            ? [.. stale.EnumerateArray().Select(s => (s.GetProperty("pool").GetString()!, s.GetProperty("state").GetString()!))]
            : [];
    }

    /// <summary>Waits until <paramref name="condition"/> holds, failing with <paramref name="what"/> after a minute.</summary>
    protected static void WaitFor(Func<bool> condition, string what)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(clock.Elapsed < TimeSpan.FromMinutes(1), $"timed out waiting for {what}");
            Thread.Sleep(50);
        }
    }

    /// <summary>Best effort: whatever a failed test left mounted, attached or running goes away.</summary>
    protected void Cleanup(params string[] mountPoints)
    {
        foreach (string dir in mountPoints)
            StorageRaw("umount", dir);
        foreach (var record in Directory.Exists(RunDir) ? Directory.GetFiles(RunDir, "*.json").Concat(Directory.GetFiles(RunDir, "*.daemon")) : [])
        {
            try
            {
                int pid = JsonDocument.Parse(File.ReadAllText(record)).RootElement.GetProperty("pid").GetInt32();
                using var process = Process.GetProcessById(pid);
                process.Kill();
                process.WaitForExit(10_000);
            }
            catch (Exception e) when (e is ArgumentException or InvalidOperationException or JsonException or KeyNotFoundException or IOException)
            {
            }
        }
    }
}
