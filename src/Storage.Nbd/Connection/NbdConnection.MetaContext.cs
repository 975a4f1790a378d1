using System.Buffers.Binary;
using System.Text;
using Storage.Nbd.Protocol;

namespace Storage.Nbd.Connection;

/// <summary>
/// NBD_OPT_LIST_META_CONTEXT and NBD_OPT_SET_META_CONTEXT. The one context served is <c>base:allocation</c>. Both
/// options need structured replies. LIST answers every context a query names (no queries, or the namespace
/// <c>base:</c>, names all); SET selects <c>base:allocation</c> only when a query names it exactly, and replaces
/// whatever an earlier SET selected (so a SET without it leaves none). Unknown namespaces and contexts get no reply of
/// their own, as the spec says. Each SET that selects the context gives it a new id, unique on the connection.
/// </summary>
internal sealed partial class NbdConnection
{
    private const int MaxMetaQueries = 128;

    private void MetaContext(uint option, byte[] data)
    {
        bool set = option == NbdProtocol.OptSetMetaContext;
        string name = set ? "NBD_OPT_SET_META_CONTEXT" : "NBD_OPT_LIST_META_CONTEXT";
        if (!_structuredReplies)
        {
            Reply(option, NbdProtocol.RepErrInvalid, $"{name} needs structured replies (NBD_OPT_STRUCTURED_REPLY) first");
            return;
        }
        if (!TryParseQueries(data, out string? export, out var queries, out string? error))
        {
            Reply(option, queries is null ? NbdProtocol.RepErrInvalid : NbdProtocol.RepErrTooBig, error!);
            return;
        }
        if (_server.FindExport(export!) is null)
        {
            Reply(option, NbdProtocol.RepErrUnknown, $"no export named '{export}'");
            return;
        }
        bool allocation = set
            ? queries!.Contains(NbdProtocol.BaseAllocation)
            : queries!.Count == 0 || queries.Exists(q => q is NbdProtocol.BaseAllocation or NbdProtocol.BaseNamespace);
        if (set)
        {
            _metaContextId = allocation ? ++_lastContextId : 0;
            _metaContextExport = export;
        }
        if (allocation)
        {
            var context = Encoding.ASCII.GetBytes(NbdProtocol.BaseAllocation);
            var reply = new byte[4 + context.Length];
            // LIST has no ids to give; the spec asks for 0.
            BinaryPrimitives.WriteUInt32BigEndian(reply, set ? _metaContextId : 0);
            context.CopyTo(reply, 4);
            Reply(option, NbdProtocol.RepMetaContext, reply);
        }
        Reply(option, NbdProtocol.RepAck, []);
    }

    /// <summary>
    /// Option data: u32 export name length, name, u32 query count, then each query as u32 length and text. False with
    /// <paramref name="queries"/> null for malformed data, or set (empty) when there are too many queries.
    /// </summary>
    private static bool TryParseQueries(byte[] data, out string? export, out List<string>? queries, out string? error)
    {
        export = null;
        queries = null;
        var span = data.AsSpan();
        if (!TryReadString(ref span, out export))
        {
            error = "malformed export name";
            return false;
        }
        if (span.Length < 4)
        {
            error = "missing the number of queries";
            return false;
        }
        uint count = BinaryPrimitives.ReadUInt32BigEndian(span);
        span = span[4..];
        if (count > MaxMetaQueries)
        {
            queries = [];
            error = $"at most {MaxMetaQueries} queries are accepted";
            return false;
        }
        var parsed = new List<string>((int)count);
        for (uint i = 0; i < count; i++)
        {
            if (!TryReadString(ref span, out string? query))
            {
                error = $"query {i} is malformed";
                return false;
            }
            parsed.Add(query!);
        }
        if (!span.IsEmpty)
        {
            error = "option length does not match the queries";
            return false;
        }
        queries = parsed;
        error = null;
        return true;
    }

    private static bool TryReadString(ref Span<byte> span, out string? value)
    {
        value = null;
        if (span.Length < 4)
            return false;
        uint length = BinaryPrimitives.ReadUInt32BigEndian(span);
        if (length > NbdProtocol.MaxStringLength || length > span.Length - 4)
            return false;
        value = Encoding.UTF8.GetString(span.Slice(4, (int)length));
        span = span[(4 + (int)length)..];
        return true;
    }
}
