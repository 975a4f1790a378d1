namespace Storage.Cli.Tests;

internal static class CliRunner
{
    public static (int Code, string Output, string Error) Run(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int code = Cli.Run(args, output, error);
        return (code, output.ToString(), error.ToString());
    }
}

/// <summary>A scratch folder, deleted afterwards.</summary>
public abstract class ScratchFolder : IDisposable
{
    protected ScratchFolder()
    {
        Dir = Path.Combine(Path.GetTempPath(), "storage-cli-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Dir);
    }

    protected string Dir { get; }

    protected string At(string name) => Path.Combine(Dir, name);

    protected string Disks(string prefix, int count) => string.Join(",", Enumerable.Range(0, count).Select(i => At($"{prefix}{i}.img")));

    public void Dispose()
    {
        Directory.Delete(Dir, recursive: true);
        GC.SuppressFinalize(this);
    }
}
