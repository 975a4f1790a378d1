namespace Storage.Metadata.Tests;

/// <summary>
/// The xUnit entry point, plus "meta ...": the same commands as <c>storage meta</c>, so the real-cluster
/// test can start replica processes from this executable and kill them with SIGKILL.
/// </summary>
internal static class Program
{
    public static int Main(string[] args)
    {
        if (args.Length > 0 && args[0] == "meta")
            return Storage.Cli.Cli.Run(args, Console.Out, Console.Error);
        if (args.Any(a => a is "--server" or "--internal-msbuild-node"))
            return Xunit.MicrosoftTestingPlatform.TestPlatformTestFramework.RunAsync(args, SelfRegisteredExtensions.AddSelfRegisteredExtensions).GetAwaiter().GetResult();
        return Xunit.Runner.InProc.SystemConsole.ConsoleRunner.Run(args).GetAwaiter().GetResult();
    }
}
