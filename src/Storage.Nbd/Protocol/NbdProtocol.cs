namespace Storage.Nbd.Protocol;

/// <summary>
/// Wire constants of the NBD protocol (NetworkBlockDevice/nbd doc/proto.md). Every integer on the wire is big-endian.
/// </summary>
internal static class NbdProtocol
{
    // Handshake.
    public const ulong InitPassword = 0x4e42444d41474943; // "NBDMAGIC"
    public const ulong OptionMagic = 0x49484156454F5054; // "IHAVEOPT"
    public const ulong OptionReplyMagic = 0x0003e889045565a9;

    // Handshake flags (server) and client flags.
    public const ushort FlagFixedNewstyle = 1 << 0;
    public const ushort FlagNoZeroes = 1 << 1;
    public const uint ClientFlagFixedNewstyle = 1 << 0;
    public const uint ClientFlagNoZeroes = 1 << 1;

    // Options.
    public const uint OptExportName = 1;
    public const uint OptAbort = 2;
    public const uint OptList = 3;
    public const uint OptStartTls = 5;
    public const uint OptInfo = 6;
    public const uint OptGo = 7;
    public const uint OptStructuredReply = 8;
    public const uint OptListMetaContext = 9;
    public const uint OptSetMetaContext = 10;

    // Option replies.
    public const uint RepAck = 1;
    public const uint RepServer = 2;
    public const uint RepInfo = 3;
    public const uint RepMetaContext = 4;
    public const uint RepErrUnsupported = 0x80000001;
    public const uint RepErrPolicy = 0x80000002;
    public const uint RepErrInvalid = 0x80000003;
    public const uint RepErrTlsRequired = 0x80000005;
    public const uint RepErrUnknown = 0x80000006;
    public const uint RepErrShutdown = 0x80000007;
    public const uint RepErrTooBig = 0x80000009;

    // NBD_REP_INFO types.
    public const ushort InfoExport = 0;
    public const ushort InfoName = 1;
    public const ushort InfoDescription = 2;
    public const ushort InfoBlockSize = 3;

    // Transmission flags.
    public const ushort TxHasFlags = 1 << 0;
    public const ushort TxReadOnly = 1 << 1;
    public const ushort TxSendFlush = 1 << 2;
    public const ushort TxSendFua = 1 << 3;
    public const ushort TxSendTrim = 1 << 5;
    public const ushort TxSendWriteZeroes = 1 << 6;
    public const ushort TxSendDf = 1 << 7;
    public const ushort TxCanMultiConn = 1 << 8;

    // Requests.
    public const uint RequestMagic = 0x25609513;
    public const int RequestHeaderLength = 28;

    public const ushort CmdRead = 0;
    public const ushort CmdWrite = 1;
    public const ushort CmdDisconnect = 2;
    public const ushort CmdFlush = 3;
    public const ushort CmdTrim = 4;
    public const ushort CmdWriteZeroes = 6;
    public const ushort CmdBlockStatus = 7;

    public const ushort CmdFlagFua = 1 << 0;
    public const ushort CmdFlagNoHole = 1 << 1;
    public const ushort CmdFlagDf = 1 << 2;
    public const ushort CmdFlagReqOne = 1 << 3;

    // Replies.
    public const uint SimpleReplyMagic = 0x67446698;
    public const int SimpleReplyHeaderLength = 16;
    public const uint StructuredReplyMagic = 0x668e33ef;
    public const int StructuredReplyHeaderLength = 20;
    public const ushort ReplyFlagDone = 1 << 0;
    public const ushort ReplyTypeNone = 0;
    public const ushort ReplyTypeOffsetData = 1;
    public const ushort ReplyTypeBlockStatus = 5;
    public const ushort ReplyTypeError = 0x8001;

    // Metadata contexts.
    public const string BaseNamespace = "base:";
    public const string BaseAllocation = "base:allocation";
    public const uint StateHole = 1;
    public const uint StateZero = 2;

    /// <summary>Longest string (export name, description, message) the protocol allows.</summary>
    public const int MaxStringLength = 4096;
}

/// <summary>The error values a reply may carry (proto.md "Error values"); the Linux errno numbers.</summary>
internal static class NbdErrno
{
    public const int EPERM = 1;
    public const int EIO = 5;
    public const int ENOMEM = 12;
    public const int EINVAL = 22;
    public const int ENOSPC = 28;
    public const int EOVERFLOW = 75;
    public const int ESHUTDOWN = 108;
}
