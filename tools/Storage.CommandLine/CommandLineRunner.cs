using System.CommandLine;

namespace Storage.CommandLine;

/// <summary>
/// Parses and runs a command tree: a parse error is reported as one line per problem (a mistyped command or option
/// gets "did you mean") followed by where help is, and exits 2 without running anything; otherwise the chosen
/// command's action runs with the given writers and without System.CommandLine's own exception or Ctrl+C
/// handling (callers map their documented exceptions to exit codes; servers stop on SIGINT/SIGTERM themselves).
/// </summary>
public static class CommandLineRunner
{
    /// <summary>Exit code of a usage error: bad arguments, nothing was done.</summary>
    public const int UsageError = 2;

    public static int Invoke(RootCommand root, string[] args, TextWriter output, TextWriter error, string program)
    {
        ArgumentNullException.ThrowIfNull(root);
        // No response files: a token starting with '@' is a snapshot (--from @monday), not a file of arguments.
        var parse = root.Parse(args, new ParserConfiguration { ResponseFileTokenReplacer = null });
        if (parse.Errors.Count > 0 && parse.Action is not { ClearsParseErrors: true })   // --help and --version run anyway
        {
            ReportErrors(parse, error, program);
            return UsageError;
        }
        var configuration = new InvocationConfiguration { Output = output, Error = error, EnableDefaultExceptionHandler = false, ProcessTerminationTimeout = null };
        try
        {
            return parse.Invoke(configuration);
        }
        catch (UsageException e)
        {
            error.WriteLine($"{program}: {e.Message}");
            return UsageError;
        }
    }

    /// <summary>"storage array create": the command's names from the root (named <paramref name="program"/>).</summary>
    public static string CommandPath(Command command, string program)
    {
        var names = new Stack<string>();
        for (Symbol? symbol = command; symbol is Command c; symbol = c.Parents.FirstOrDefault())
            names.Push(c is RootCommand ? program : c.Name);
        return string.Join(' ', names);
    }

    private static void ReportErrors(ParseResult parse, TextWriter error, string program)
    {
        var command = parse.CommandResult.Command;
        string path = CommandPath(command, program);
        var unmatched = parse.UnmatchedTokens.ToHashSet(StringComparer.Ordinal);
        foreach (var token in parse.UnmatchedTokens)
        {
            if (token.StartsWith('-'))
            {
                var names = command.Options.Concat(parse.RootCommandResult.Command.Options.Where(o => o.Recursive)).SelectMany(o => o.Aliases.Append(o.Name));
                error.WriteLine($"{program}: unknown option '{token}' for '{path}'.{Suggest(token, names)} Run '{path} --help' for its options.");
            }
            else if (command.Subcommands.Count > 0)
            {
                error.WriteLine($"{program}: unknown command '{token}' for '{path}'.{Suggest(token, command.Subcommands.Select(c => c.Name))} Run '{path} --help' for the list.");
            }
            else
            {
                error.WriteLine($"{program}: unexpected argument '{token}' for '{path}'. Run '{path} --help' for usage.");
            }
        }
        foreach (var problem in parse.Errors.Where(e => !unmatched.Any(t => e.Message.Contains($"'{t}'", StringComparison.Ordinal))))
            error.WriteLine($"{program}: {problem.Message}");
    }

    private static string Suggest(string typed, IEnumerable<string> known)
    {
        var close = known.Distinct().Select(k => (Name: k, Distance: CliOptions.Distance(k, typed))).Where(k => k.Distance <= 2).OrderBy(k => k.Distance).FirstOrDefault();
        return close.Name is null ? "" : $" Did you mean '{close.Name}'?";
    }
}
