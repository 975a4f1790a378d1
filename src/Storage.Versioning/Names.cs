namespace Storage.Versioning;

/// <summary>Rules for pool, volume and snapshot names: they become NBD export names <c>VOL</c> and <c>VOL@SNAP</c>.</summary>
internal static class Names
{
    public const int MaxLength = 64;

    public static void Check(string name, string what)
    {
        if (string.IsNullOrEmpty(name) || name.Length > MaxLength || !name.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-') || name[0] is '.' or '-')
            throw new PoolConfigurationException($"'{name}' is not a valid {what} name: use 1 to {MaxLength} letters, digits, '.', '_' or '-', not starting with '.' or '-'.");
    }
}
