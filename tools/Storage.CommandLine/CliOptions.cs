using Storage.CommandLine;
using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;

namespace Storage.CommandLine;

/// <summary>Bad command-line input; the message says what to do instead.</summary>
public sealed class UsageException(string message) : Exception(message);

/// <summary>
/// The kinds of option every <c>storage</c> verb uses, each parsed and checked by System.CommandLine so that a bad
/// value is a usage error (exit 2) before anything runs: byte sizes (4096, 64K, 512M, 2G), bounded whole numbers,
/// flags, text, and disk lists (comma-separated paths and globs).
/// </summary>
public static class CliOptions
{
    public static Option<bool> Flag(string name, string description) => new(name) { Description = description };

    public static Option<string?> Text(string name, string description, string? helpName = null)
        => new(name) { Description = description, HelpName = helpName };

    /// <summary>A whole number in [min, max]; null when absent.</summary>
    public static Option<int?> Number(string name, string description, int min, int max, string? helpName = null) => new(name)
    {
        Description = description,
        HelpName = helpName ?? "N",
        CustomParser = result =>
        {
            string text = Single(result);
            if (!int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out int value))
                return Error<int?>(result, $"{name} needs a whole number, got '{text}'.");
            if (value < min || value > max)
                return Error<int?>(result, $"{name} must be between {min} and {max}, got {value}.");
            return value;
        },
    };

    /// <summary>A byte size in [min, max] (binary units K, M, G, T); null when absent.</summary>
    public static Option<long?> Size(string name, string description, long min, long max) => new(name)
    {
        Description = description,
        HelpName = "SIZE",
        CustomParser = result =>
        {
            string text = Single(result);
            if (!TryParseSize(text, out long value))
                return Error<long?>(result, $"{name} needs a size such as 4096, 64K, 512M or 2G, got '{text}'.");
            if (value < min || value > max)
                return Error<long?>(result, $"{name} must be between {min} and {max} bytes, got {value}.");
            return value;
        },
    };

    /// <summary>Comma-separated paths; each item may be a glob (<c>dir/*.img</c>), expanded and sorted. Empty when absent.</summary>
    public static Option<IReadOnlyList<string>> Paths(string name, string description) => new(name)
    {
        Description = description,
        HelpName = "A,B,…",
        DefaultValueFactory = _ => [],
        CustomParser = result =>
        {
            try
            {
                return ExpandPaths(Single(result), name);
            }
            catch (UsageException e)
            {
                return Error<IReadOnlyList<string>>(result, e.Message);
            }
        },
    };

    public static bool TryParseSize(string text, out long value)
    {
        value = 0;
        int shift = char.ToUpperInvariant(text.Length > 0 ? text[^1] : ' ') switch { 'K' => 10, 'M' => 20, 'G' => 30, 'T' => 40, _ => 0 };
        string digits = shift == 0 ? text : text[..^1];
        if (!long.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out long number) || number > long.MaxValue >> shift)
            return false;
        value = number << shift;
        return true;
    }

    public static IReadOnlyList<string> ExpandPaths(string text, string name)
    {
        var paths = new List<string>();
        foreach (var item in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (item.IndexOfAny(['*', '?']) < 0)
            {
                paths.Add(Path.GetFullPath(item));
                continue;
            }
            string directory = Path.GetDirectoryName(Path.GetFullPath(item)) ?? ".";
            var matches = Directory.Exists(directory) ? Directory.GetFiles(directory, Path.GetFileName(item)) : [];
            if (matches.Length == 0)
                throw new UsageException($"{name}: '{item}' matches no file.");
            Array.Sort(matches, StringComparer.Ordinal);
            paths.AddRange(matches);
        }
        return paths;
    }

    /// <summary>Levenshtein distance, for "did you mean".</summary>
    public static int Distance(string a, string b)
    {
        var row = Enumerable.Range(0, b.Length + 1).ToArray();
        for (int i = 1; i <= a.Length; i++)
        {
            int previous = row[0];
            row[0] = i;
            for (int j = 1; j <= b.Length; j++)
            {
                int current = row[j];
                row[j] = Math.Min(Math.Min(row[j] + 1, row[j - 1] + 1), previous + (a[i - 1] == b[j - 1] ? 0 : 1));
                previous = current;
            }
        }
        return row[b.Length];
    }

    private static string Single(ArgumentResult result) => result.Tokens.Count > 0 ? result.Tokens[0].Value : "";

    private static T? Error<T>(ArgumentResult result, string message)
    {
        result.AddError(message);
        return default;
    }
}
