namespace Storage.Cli.Tests;

public sealed class QuickstartTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "storage-quickstart-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_dir))
            Directory.Delete(_dir, recursive: true);
    }

    [Fact]
    public void Quickstart_survives_two_failed_disks_and_can_run_twice()
    {
        for (int run = 0; run < 2; run++)
        {
            var (code, output, error) = Run("quickstart", "--dir", _dir, "--size-mib", "4");
            Assert.True(code == 0, $"run {run}: exit {code}\n{output}\n{error}");
            Assert.Contains("read degraded", output, StringComparison.Ordinal);
            Assert.Contains("data intact", output, StringComparison.Ordinal);
            Assert.Contains("stripes consistent", output, StringComparison.Ordinal);
            Assert.Contains("rebuilt onto spares", output, StringComparison.Ordinal);
            Assert.EndsWith("quickstart: OK", output.TrimEnd(), StringComparison.Ordinal);
            Assert.Equal(8, Directory.GetFiles(_dir, "disk*.img").Length);   // two were deleted: the spares took their roles
            Assert.Equal(2, Directory.GetFiles(_dir, "spare*.img").Length);
        }
    }

    [Fact]
    public void A_folder_quickstart_did_not_make_is_refused_and_left_alone()
    {
        Directory.CreateDirectory(_dir);
        string precious = Path.Combine(_dir, "precious.img");
        File.WriteAllText(precious, "keep me");
        var (code, _, error) = Run("quickstart", "--dir", _dir);
        Assert.Equal(2, code);
        Assert.Contains("not made by 'storage quickstart'", error, StringComparison.Ordinal);
        Assert.Equal("keep me", File.ReadAllText(precious));
        Assert.Single(Directory.GetFileSystemEntries(_dir));
    }

    [Theory]
    [InlineData("quickstrat", "Did you mean 'quickstart'?")]
    [InlineData("quickstart --szie-mib 3", "Did you mean '--size-mib'?")]
    [InlineData("quickstart --size-mib lots", "--size-mib needs a whole number")]
    [InlineData("quickstart --size-mib 0", "between 1 and")]
    [InlineData("bench", "storage bench parity")]
    [InlineData("bench parity --size-kib 3", "between 4 and")]
    public void Bad_input_is_a_usage_error_that_says_what_to_do(string args, string expected)
    {
        var (code, _, error) = Run(args.Split(' '));
        Assert.Equal(2, code);
        Assert.Contains(expected, error, StringComparison.Ordinal);
    }

    [Fact]
    public void Help_lists_the_commands_and_the_exit_codes()
    {
        var (code, output, _) = Run("--help");
        Assert.Equal(0, code);
        foreach (var command in new[] { "quickstart", "array", "serve", "mount", "umount", "meta", "bench" })
            Assert.Contains(command, output, StringComparison.Ordinal);
        Assert.Contains("Exit codes", output, StringComparison.Ordinal);
    }

    [Fact]
    public void Bench_parity_reports_every_available_kernel_set_as_json()
    {
        var (code, output, error) = Run("bench", "parity", "--size-kib", "4", "--json");
        Assert.True(code == 0, error);
        using var json = System.Text.Json.JsonDocument.Parse(output);
        var kernels = json.RootElement.GetProperty("results").EnumerateArray().Select(r => r.GetProperty("kernels").GetString()).ToHashSet();
        foreach (var set in Parity.KernelSets.Available)
            Assert.Contains(set.Name, kernels);
        Assert.All(json.RootElement.GetProperty("results").EnumerateArray(), r => Assert.True(r.GetProperty("gBps").GetDouble() > 0));
    }

    private static (int Code, string Output, string Error) Run(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int code = Cli.Run(args, output, error);
        return (code, output.ToString(), error.ToString());
    }
}
