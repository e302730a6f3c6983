from google.protobuf import descriptor_pb2 as _descriptor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SchemaVersion(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SCHEMA_VERSION_UNSPECIFIED: _ClassVar[SchemaVersion]
    SCHEMA_VERSION: _ClassVar[SchemaVersion]

class Stream(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STREAM_UNSPECIFIED: _ClassVar[Stream]
    STREAM_COMMAND_RESULT: _ClassVar[Stream]
    STREAM_TELEMETRY: _ClassVar[Stream]
    STREAM_SPIKES: _ClassVar[Stream]
    STREAM_FEATURES: _ClassVar[Stream]
    STREAM_SNIPPETS: _ClassVar[Stream]
    STREAM_RAW: _ClassVar[Stream]

class UnitEventKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UNIT_EVENT_UNSPECIFIED: _ClassVar[UnitEventKind]
    UNIT_BIRTH: _ClassVar[UnitEventKind]
    UNIT_MERGE: _ClassVar[UnitEventKind]
    UNIT_RETIRE: _ClassVar[UnitEventKind]
    UNIT_LABEL: _ClassVar[UnitEventKind]

class RawEncoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RAW_ENCODING_UNSPECIFIED: _ClassVar[RawEncoding]
    RAW_INT16_LE: _ClassVar[RawEncoding]
    RAW_NK_CODEC: _ClassVar[RawEncoding]

class ShedReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SHED_REASON_UNSPECIFIED: _ClassVar[ShedReason]
    SHED_BUDGET: _ClassVar[ShedReason]
    SHED_QUEUE_FULL: _ClassVar[ShedReason]
    SHED_OUTAGE: _ClassVar[ShedReason]
    SHED_IMPLANT_GAP: _ClassVar[ShedReason]
    SHED_HUB_RESTART: _ClassVar[ShedReason]
    SHED_STOPPED: _ClassVar[ShedReason]
    SHED_IMPLANT_FORMAT: _ClassVar[ShedReason]

class ResultCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESULT_OK: _ClassVar[ResultCode]
    RESULT_MALFORMED: _ClassVar[ResultCode]
    RESULT_INVALID_ARGUMENT: _ClassVar[ResultCode]
    RESULT_UNSUPPORTED: _ClassVar[ResultCode]
    RESULT_VERSION_MISMATCH: _ClassVar[ResultCode]
    RESULT_INTERNAL: _ClassVar[ResultCode]
SCHEMA_VERSION_UNSPECIFIED: SchemaVersion
SCHEMA_VERSION: SchemaVersion
STREAM_UNSPECIFIED: Stream
STREAM_COMMAND_RESULT: Stream
STREAM_TELEMETRY: Stream
STREAM_SPIKES: Stream
STREAM_FEATURES: Stream
STREAM_SNIPPETS: Stream
STREAM_RAW: Stream
UNIT_EVENT_UNSPECIFIED: UnitEventKind
UNIT_BIRTH: UnitEventKind
UNIT_MERGE: UnitEventKind
UNIT_RETIRE: UnitEventKind
UNIT_LABEL: UnitEventKind
RAW_ENCODING_UNSPECIFIED: RawEncoding
RAW_INT16_LE: RawEncoding
RAW_NK_CODEC: RawEncoding
SHED_REASON_UNSPECIFIED: ShedReason
SHED_BUDGET: ShedReason
SHED_QUEUE_FULL: ShedReason
SHED_OUTAGE: ShedReason
SHED_IMPLANT_GAP: ShedReason
SHED_HUB_RESTART: ShedReason
SHED_STOPPED: ShedReason
SHED_IMPLANT_FORMAT: ShedReason
RESULT_OK: ResultCode
RESULT_MALFORMED: ResultCode
RESULT_INVALID_ARGUMENT: ResultCode
RESULT_UNSUPPORTED: ResultCode
RESULT_VERSION_MISMATCH: ResultCode
RESULT_INTERNAL: ResultCode
SETTING_FIELD_NUMBER: _ClassVar[int]
setting: _descriptor.FieldDescriptor

class Envelope(_message.Message):
    __slots__ = ("schema_version", "stream", "seq", "sample_index", "hub_time_ns", "session_id", "spikes", "features", "snippets", "raw", "telemetry", "time_sync", "log", "result", "shed")
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_INDEX_FIELD_NUMBER: _ClassVar[int]
    HUB_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SPIKES_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    SNIPPETS_FIELD_NUMBER: _ClassVar[int]
    RAW_FIELD_NUMBER: _ClassVar[int]
    TELEMETRY_FIELD_NUMBER: _ClassVar[int]
    TIME_SYNC_FIELD_NUMBER: _ClassVar[int]
    LOG_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    SHED_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    stream: Stream
    seq: int
    sample_index: int
    hub_time_ns: int
    session_id: int
    spikes: SpikeBatch
    features: FeatureBins
    snippets: Snippets
    raw: RawBlock
    telemetry: Telemetry
    time_sync: TimeSync
    log: LogRecord
    result: CommandResult
    shed: ShedReport
    def __init__(self, schema_version: _Optional[int] = ..., stream: _Optional[_Union[Stream, str]] = ..., seq: _Optional[int] = ..., sample_index: _Optional[int] = ..., hub_time_ns: _Optional[int] = ..., session_id: _Optional[int] = ..., spikes: _Optional[_Union[SpikeBatch, _Mapping]] = ..., features: _Optional[_Union[FeatureBins, _Mapping]] = ..., snippets: _Optional[_Union[Snippets, _Mapping]] = ..., raw: _Optional[_Union[RawBlock, _Mapping]] = ..., telemetry: _Optional[_Union[Telemetry, _Mapping]] = ..., time_sync: _Optional[_Union[TimeSync, _Mapping]] = ..., log: _Optional[_Union[LogRecord, _Mapping]] = ..., result: _Optional[_Union[CommandResult, _Mapping]] = ..., shed: _Optional[_Union[ShedReport, _Mapping]] = ...) -> None: ...

class SpikeBatch(_message.Message):
    __slots__ = ("first_sample", "offset", "channel", "unit", "amplitude", "end_sample", "unit_events")
    FIRST_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    AMPLITUDE_FIELD_NUMBER: _ClassVar[int]
    END_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    UNIT_EVENTS_FIELD_NUMBER: _ClassVar[int]
    first_sample: int
    offset: _containers.RepeatedScalarFieldContainer[int]
    channel: _containers.RepeatedScalarFieldContainer[int]
    unit: _containers.RepeatedScalarFieldContainer[int]
    amplitude: _containers.RepeatedScalarFieldContainer[int]
    end_sample: int
    unit_events: _containers.RepeatedCompositeFieldContainer[UnitEvent]
    def __init__(self, first_sample: _Optional[int] = ..., offset: _Optional[_Iterable[int]] = ..., channel: _Optional[_Iterable[int]] = ..., unit: _Optional[_Iterable[int]] = ..., amplitude: _Optional[_Iterable[int]] = ..., end_sample: _Optional[int] = ..., unit_events: _Optional[_Iterable[_Union[UnitEvent, _Mapping]]] = ...) -> None: ...

class UnitEvent(_message.Message):
    __slots__ = ("sample", "kind", "unit", "other", "channel")
    SAMPLE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    OTHER_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    sample: int
    kind: UnitEventKind
    unit: int
    other: int
    channel: int
    def __init__(self, sample: _Optional[int] = ..., kind: _Optional[_Union[UnitEventKind, str]] = ..., unit: _Optional[int] = ..., other: _Optional[int] = ..., channel: _Optional[int] = ...) -> None: ...

class FeatureBins(_message.Message):
    __slots__ = ("first_bin", "bin_samples", "n_channels", "n_bins", "counts", "rms_q4", "samples_seen", "first_sample", "hg_rms_q4")
    FIRST_BIN_FIELD_NUMBER: _ClassVar[int]
    BIN_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    N_CHANNELS_FIELD_NUMBER: _ClassVar[int]
    N_BINS_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    RMS_Q4_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_SEEN_FIELD_NUMBER: _ClassVar[int]
    FIRST_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    HG_RMS_Q4_FIELD_NUMBER: _ClassVar[int]
    first_bin: int
    bin_samples: int
    n_channels: int
    n_bins: int
    counts: _containers.RepeatedScalarFieldContainer[int]
    rms_q4: _containers.RepeatedScalarFieldContainer[int]
    samples_seen: _containers.RepeatedScalarFieldContainer[int]
    first_sample: int
    hg_rms_q4: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, first_bin: _Optional[int] = ..., bin_samples: _Optional[int] = ..., n_channels: _Optional[int] = ..., n_bins: _Optional[int] = ..., counts: _Optional[_Iterable[int]] = ..., rms_q4: _Optional[_Iterable[int]] = ..., samples_seen: _Optional[_Iterable[int]] = ..., first_sample: _Optional[int] = ..., hg_rms_q4: _Optional[_Iterable[int]] = ...) -> None: ...

class Snippets(_message.Message):
    __slots__ = ("n_samples", "pre", "sample", "channel", "unit", "neighbors", "waveforms", "k")
    N_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    PRE_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    NEIGHBORS_FIELD_NUMBER: _ClassVar[int]
    WAVEFORMS_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    n_samples: int
    pre: int
    sample: _containers.RepeatedScalarFieldContainer[int]
    channel: _containers.RepeatedScalarFieldContainer[int]
    unit: _containers.RepeatedScalarFieldContainer[int]
    neighbors: _containers.RepeatedScalarFieldContainer[int]
    waveforms: bytes
    k: int
    def __init__(self, n_samples: _Optional[int] = ..., pre: _Optional[int] = ..., sample: _Optional[_Iterable[int]] = ..., channel: _Optional[_Iterable[int]] = ..., unit: _Optional[_Iterable[int]] = ..., neighbors: _Optional[_Iterable[int]] = ..., waveforms: _Optional[bytes] = ..., k: _Optional[int] = ...) -> None: ...

class RawBlock(_message.Message):
    __slots__ = ("first_sample", "n_samples", "channels", "encoding", "data", "codec_header")
    FIRST_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    N_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    CODEC_HEADER_FIELD_NUMBER: _ClassVar[int]
    first_sample: int
    n_samples: int
    channels: _containers.RepeatedScalarFieldContainer[int]
    encoding: RawEncoding
    data: bytes
    codec_header: bytes
    def __init__(self, first_sample: _Optional[int] = ..., n_samples: _Optional[int] = ..., channels: _Optional[_Iterable[int]] = ..., encoding: _Optional[_Union[RawEncoding, str]] = ..., data: _Optional[bytes] = ..., codec_header: _Optional[bytes] = ...) -> None: ...

class ClassCounters(_message.Message):
    __slots__ = ("stream", "produced", "sent", "shed", "queued", "queued_bytes")
    STREAM_FIELD_NUMBER: _ClassVar[int]
    PRODUCED_FIELD_NUMBER: _ClassVar[int]
    SENT_FIELD_NUMBER: _ClassVar[int]
    SHED_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    QUEUED_BYTES_FIELD_NUMBER: _ClassVar[int]
    stream: Stream
    produced: int
    sent: int
    shed: int
    queued: int
    queued_bytes: int
    def __init__(self, stream: _Optional[_Union[Stream, str]] = ..., produced: _Optional[int] = ..., sent: _Optional[int] = ..., shed: _Optional[int] = ..., queued: _Optional[int] = ..., queued_bytes: _Optional[int] = ...) -> None: ...

class Telemetry(_message.Message):
    __slots__ = ("cpu_load", "kernel_seconds", "classes", "link_frames", "link_corrupt", "link_missing_frames", "link_bytes", "link_garbage_bytes", "budget_bps", "uplink_bps", "uplink_chunks", "uplink_connects", "raw_channels_sent", "temperature_c", "battery_pct", "stage_restarts", "stage_seconds", "blocks", "overruns", "running", "config_json", "n_channels", "sampling_frequency", "probe", "hub_version", "link_health", "selftest")
    class KernelSecondsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class StageSecondsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    CPU_LOAD_FIELD_NUMBER: _ClassVar[int]
    KERNEL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    LINK_FRAMES_FIELD_NUMBER: _ClassVar[int]
    LINK_CORRUPT_FIELD_NUMBER: _ClassVar[int]
    LINK_MISSING_FRAMES_FIELD_NUMBER: _ClassVar[int]
    LINK_BYTES_FIELD_NUMBER: _ClassVar[int]
    LINK_GARBAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    BUDGET_BPS_FIELD_NUMBER: _ClassVar[int]
    UPLINK_BPS_FIELD_NUMBER: _ClassVar[int]
    UPLINK_CHUNKS_FIELD_NUMBER: _ClassVar[int]
    UPLINK_CONNECTS_FIELD_NUMBER: _ClassVar[int]
    RAW_CHANNELS_SENT_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_C_FIELD_NUMBER: _ClassVar[int]
    BATTERY_PCT_FIELD_NUMBER: _ClassVar[int]
    STAGE_RESTARTS_FIELD_NUMBER: _ClassVar[int]
    STAGE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    BLOCKS_FIELD_NUMBER: _ClassVar[int]
    OVERRUNS_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    N_CHANNELS_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FREQUENCY_FIELD_NUMBER: _ClassVar[int]
    PROBE_FIELD_NUMBER: _ClassVar[int]
    HUB_VERSION_FIELD_NUMBER: _ClassVar[int]
    LINK_HEALTH_FIELD_NUMBER: _ClassVar[int]
    SELFTEST_FIELD_NUMBER: _ClassVar[int]
    cpu_load: float
    kernel_seconds: _containers.ScalarMap[str, float]
    classes: _containers.RepeatedCompositeFieldContainer[ClassCounters]
    link_frames: int
    link_corrupt: int
    link_missing_frames: int
    link_bytes: int
    link_garbage_bytes: int
    budget_bps: float
    uplink_bps: float
    uplink_chunks: int
    uplink_connects: int
    raw_channels_sent: int
    temperature_c: float
    battery_pct: float
    stage_restarts: int
    stage_seconds: _containers.ScalarMap[str, float]
    blocks: int
    overruns: int
    running: bool
    config_json: str
    n_channels: int
    sampling_frequency: float
    probe: ProbeInfo
    hub_version: str
    link_health: LinkHealth
    selftest: KernelSelfTest
    def __init__(self, cpu_load: _Optional[float] = ..., kernel_seconds: _Optional[_Mapping[str, float]] = ..., classes: _Optional[_Iterable[_Union[ClassCounters, _Mapping]]] = ..., link_frames: _Optional[int] = ..., link_corrupt: _Optional[int] = ..., link_missing_frames: _Optional[int] = ..., link_bytes: _Optional[int] = ..., link_garbage_bytes: _Optional[int] = ..., budget_bps: _Optional[float] = ..., uplink_bps: _Optional[float] = ..., uplink_chunks: _Optional[int] = ..., uplink_connects: _Optional[int] = ..., raw_channels_sent: _Optional[int] = ..., temperature_c: _Optional[float] = ..., battery_pct: _Optional[float] = ..., stage_restarts: _Optional[int] = ..., stage_seconds: _Optional[_Mapping[str, float]] = ..., blocks: _Optional[int] = ..., overruns: _Optional[int] = ..., running: _Optional[bool] = ..., config_json: _Optional[str] = ..., n_channels: _Optional[int] = ..., sampling_frequency: _Optional[float] = ..., probe: _Optional[_Union[ProbeInfo, _Mapping]] = ..., hub_version: _Optional[str] = ..., link_health: _Optional[_Union[LinkHealth, _Mapping]] = ..., selftest: _Optional[_Union[KernelSelfTest, _Mapping]] = ...) -> None: ...

class ProbeInfo(_message.Message):
    __slots__ = ("x_um", "y_um", "group", "uv_per_count", "location", "name")
    X_UM_FIELD_NUMBER: _ClassVar[int]
    Y_UM_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    UV_PER_COUNT_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    x_um: _containers.RepeatedScalarFieldContainer[float]
    y_um: _containers.RepeatedScalarFieldContainer[float]
    group: _containers.RepeatedScalarFieldContainer[int]
    uv_per_count: float
    location: str
    name: str
    def __init__(self, x_um: _Optional[_Iterable[float]] = ..., y_um: _Optional[_Iterable[float]] = ..., group: _Optional[_Iterable[int]] = ..., uv_per_count: _Optional[float] = ..., location: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class LinkHealth(_message.Message):
    __slots__ = ("duplicate_frames", "stale_frames", "foreign_frames", "discontinuities", "format_changes", "implant_connections", "squatters_dropped", "implants_refused", "uplink_auth_timeouts", "uplink_refused")
    DUPLICATE_FRAMES_FIELD_NUMBER: _ClassVar[int]
    STALE_FRAMES_FIELD_NUMBER: _ClassVar[int]
    FOREIGN_FRAMES_FIELD_NUMBER: _ClassVar[int]
    DISCONTINUITIES_FIELD_NUMBER: _ClassVar[int]
    FORMAT_CHANGES_FIELD_NUMBER: _ClassVar[int]
    IMPLANT_CONNECTIONS_FIELD_NUMBER: _ClassVar[int]
    SQUATTERS_DROPPED_FIELD_NUMBER: _ClassVar[int]
    IMPLANTS_REFUSED_FIELD_NUMBER: _ClassVar[int]
    UPLINK_AUTH_TIMEOUTS_FIELD_NUMBER: _ClassVar[int]
    UPLINK_REFUSED_FIELD_NUMBER: _ClassVar[int]
    duplicate_frames: int
    stale_frames: int
    foreign_frames: int
    discontinuities: int
    format_changes: int
    implant_connections: int
    squatters_dropped: int
    implants_refused: int
    uplink_auth_timeouts: int
    uplink_refused: int
    def __init__(self, duplicate_frames: _Optional[int] = ..., stale_frames: _Optional[int] = ..., foreign_frames: _Optional[int] = ..., discontinuities: _Optional[int] = ..., format_changes: _Optional[int] = ..., implant_connections: _Optional[int] = ..., squatters_dropped: _Optional[int] = ..., implants_refused: _Optional[int] = ..., uplink_auth_timeouts: _Optional[int] = ..., uplink_refused: _Optional[int] = ...) -> None: ...

class KernelSelfTest(_message.Message):
    __slots__ = ("passed", "reference", "library_version", "kernels", "summary", "machine")
    PASSED_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    LIBRARY_VERSION_FIELD_NUMBER: _ClassVar[int]
    KERNELS_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    MACHINE_FIELD_NUMBER: _ClassVar[int]
    passed: bool
    reference: bool
    library_version: int
    kernels: int
    summary: str
    machine: str
    def __init__(self, passed: _Optional[bool] = ..., reference: _Optional[bool] = ..., library_version: _Optional[int] = ..., kernels: _Optional[int] = ..., summary: _Optional[str] = ..., machine: _Optional[str] = ...) -> None: ...

class ShedRange(_message.Message):
    __slots__ = ("stream", "reason", "first_sample", "end_sample", "items", "packets", "channels")
    STREAM_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    FIRST_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    END_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    PACKETS_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    stream: Stream
    reason: ShedReason
    first_sample: int
    end_sample: int
    items: int
    packets: int
    channels: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, stream: _Optional[_Union[Stream, str]] = ..., reason: _Optional[_Union[ShedReason, str]] = ..., first_sample: _Optional[int] = ..., end_sample: _Optional[int] = ..., items: _Optional[int] = ..., packets: _Optional[int] = ..., channels: _Optional[_Iterable[int]] = ...) -> None: ...

class ShedReport(_message.Message):
    __slots__ = ("ranges", "totals", "report_seq", "final")
    RANGES_FIELD_NUMBER: _ClassVar[int]
    TOTALS_FIELD_NUMBER: _ClassVar[int]
    REPORT_SEQ_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    ranges: _containers.RepeatedCompositeFieldContainer[ShedRange]
    totals: _containers.RepeatedCompositeFieldContainer[ClassCounters]
    report_seq: int
    final: bool
    def __init__(self, ranges: _Optional[_Iterable[_Union[ShedRange, _Mapping]]] = ..., totals: _Optional[_Iterable[_Union[ClassCounters, _Mapping]]] = ..., report_seq: _Optional[int] = ..., final: _Optional[bool] = ...) -> None: ...

class TimeSync(_message.Message):
    __slots__ = ("sample_index", "hub_time_ns", "sampling_frequency", "host_time_ns", "clock_epoch", "sent_ns")
    SAMPLE_INDEX_FIELD_NUMBER: _ClassVar[int]
    HUB_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FREQUENCY_FIELD_NUMBER: _ClassVar[int]
    HOST_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    CLOCK_EPOCH_FIELD_NUMBER: _ClassVar[int]
    SENT_NS_FIELD_NUMBER: _ClassVar[int]
    sample_index: int
    hub_time_ns: int
    sampling_frequency: float
    host_time_ns: int
    clock_epoch: int
    sent_ns: int
    def __init__(self, sample_index: _Optional[int] = ..., hub_time_ns: _Optional[int] = ..., sampling_frequency: _Optional[float] = ..., host_time_ns: _Optional[int] = ..., clock_epoch: _Optional[int] = ..., sent_ns: _Optional[int] = ...) -> None: ...

class LogRecord(_message.Message):
    __slots__ = ("level", "logger", "message")
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    LOGGER_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    level: int
    logger: str
    message: str
    def __init__(self, level: _Optional[int] = ..., logger: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class SettingSpec(_message.Message):
    __slots__ = ("min", "max", "unit", "live", "choices", "default", "help")
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    LIVE_FIELD_NUMBER: _ClassVar[int]
    CHOICES_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_FIELD_NUMBER: _ClassVar[int]
    HELP_FIELD_NUMBER: _ClassVar[int]
    min: float
    max: float
    unit: str
    live: bool
    choices: _containers.RepeatedScalarFieldContainer[str]
    default: str
    help: str
    def __init__(self, min: _Optional[float] = ..., max: _Optional[float] = ..., unit: _Optional[str] = ..., live: _Optional[bool] = ..., choices: _Optional[_Iterable[str]] = ..., default: _Optional[str] = ..., help: _Optional[str] = ...) -> None: ...

class PipelineSettings(_message.Message):
    __slots__ = ("block_ms", "band_low_hz", "band_high_hz", "filter_order", "reference", "reference_group_size", "polarity", "threshold", "exclude_ms", "refractory_ms", "warmup_s", "noise_tau_s", "neighbor_radius_um", "snippet_pre", "snippet_post", "snippet_channels", "bin_ms", "lfp", "lfp_cutoff_hz", "lfp_rate_hz", "sort")
    BLOCK_MS_FIELD_NUMBER: _ClassVar[int]
    BAND_LOW_HZ_FIELD_NUMBER: _ClassVar[int]
    BAND_HIGH_HZ_FIELD_NUMBER: _ClassVar[int]
    FILTER_ORDER_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_GROUP_SIZE_FIELD_NUMBER: _ClassVar[int]
    POLARITY_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_MS_FIELD_NUMBER: _ClassVar[int]
    REFRACTORY_MS_FIELD_NUMBER: _ClassVar[int]
    WARMUP_S_FIELD_NUMBER: _ClassVar[int]
    NOISE_TAU_S_FIELD_NUMBER: _ClassVar[int]
    NEIGHBOR_RADIUS_UM_FIELD_NUMBER: _ClassVar[int]
    SNIPPET_PRE_FIELD_NUMBER: _ClassVar[int]
    SNIPPET_POST_FIELD_NUMBER: _ClassVar[int]
    SNIPPET_CHANNELS_FIELD_NUMBER: _ClassVar[int]
    BIN_MS_FIELD_NUMBER: _ClassVar[int]
    LFP_FIELD_NUMBER: _ClassVar[int]
    LFP_CUTOFF_HZ_FIELD_NUMBER: _ClassVar[int]
    LFP_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    SORT_FIELD_NUMBER: _ClassVar[int]
    block_ms: float
    band_low_hz: float
    band_high_hz: float
    filter_order: int
    reference: str
    reference_group_size: int
    polarity: str
    threshold: float
    exclude_ms: float
    refractory_ms: float
    warmup_s: float
    noise_tau_s: float
    neighbor_radius_um: float
    snippet_pre: int
    snippet_post: int
    snippet_channels: int
    bin_ms: float
    lfp: bool
    lfp_cutoff_hz: float
    lfp_rate_hz: float
    sort: bool
    def __init__(self, block_ms: _Optional[float] = ..., band_low_hz: _Optional[float] = ..., band_high_hz: _Optional[float] = ..., filter_order: _Optional[int] = ..., reference: _Optional[str] = ..., reference_group_size: _Optional[int] = ..., polarity: _Optional[str] = ..., threshold: _Optional[float] = ..., exclude_ms: _Optional[float] = ..., refractory_ms: _Optional[float] = ..., warmup_s: _Optional[float] = ..., noise_tau_s: _Optional[float] = ..., neighbor_radius_um: _Optional[float] = ..., snippet_pre: _Optional[int] = ..., snippet_post: _Optional[int] = ..., snippet_channels: _Optional[int] = ..., bin_ms: _Optional[float] = ..., lfp: _Optional[bool] = ..., lfp_cutoff_hz: _Optional[float] = ..., lfp_rate_hz: _Optional[float] = ..., sort: _Optional[bool] = ...) -> None: ...

class Configure(_message.Message):
    __slots__ = ("pipeline", "raw_channel_mask", "snippets", "outage_buffer_s", "raw_codec")
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    RAW_CHANNEL_MASK_FIELD_NUMBER: _ClassVar[int]
    SNIPPETS_FIELD_NUMBER: _ClassVar[int]
    OUTAGE_BUFFER_S_FIELD_NUMBER: _ClassVar[int]
    RAW_CODEC_FIELD_NUMBER: _ClassVar[int]
    pipeline: PipelineSettings
    raw_channel_mask: bytes
    snippets: bool
    outage_buffer_s: float
    raw_codec: bool
    def __init__(self, pipeline: _Optional[_Union[PipelineSettings, _Mapping]] = ..., raw_channel_mask: _Optional[bytes] = ..., snippets: _Optional[bool] = ..., outage_buffer_s: _Optional[float] = ..., raw_codec: _Optional[bool] = ...) -> None: ...

class HubSettings(_message.Message):
    __slots__ = ("schema", "pipeline", "snippets", "outage_buffer_s", "raw_codec", "running", "raw_channels")
    SCHEMA_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    SNIPPETS_FIELD_NUMBER: _ClassVar[int]
    OUTAGE_BUFFER_S_FIELD_NUMBER: _ClassVar[int]
    RAW_CODEC_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    RAW_CHANNELS_FIELD_NUMBER: _ClassVar[int]
    schema: int
    pipeline: PipelineSettings
    snippets: bool
    outage_buffer_s: float
    raw_codec: bool
    running: bool
    raw_channels: RawChannels
    def __init__(self, schema: _Optional[int] = ..., pipeline: _Optional[_Union[PipelineSettings, _Mapping]] = ..., snippets: _Optional[bool] = ..., outage_buffer_s: _Optional[float] = ..., raw_codec: _Optional[bool] = ..., running: _Optional[bool] = ..., raw_channels: _Optional[_Union[RawChannels, _Mapping]] = ...) -> None: ...

class RawChannels(_message.Message):
    __slots__ = ("channels",)
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    channels: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, channels: _Optional[_Iterable[int]] = ...) -> None: ...

class Start(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Stop(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SetThresholds(_message.Message):
    __slots__ = ("threshold",)
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    threshold: float
    def __init__(self, threshold: _Optional[float] = ...) -> None: ...

class LoadTemplates(_message.Message):
    __slots__ = ("n_units", "n_channels", "n_samples", "waveforms", "channels", "unit_ids", "noise", "basis", "n_features", "pre", "sampling_frequency", "part", "n_parts")
    N_UNITS_FIELD_NUMBER: _ClassVar[int]
    N_CHANNELS_FIELD_NUMBER: _ClassVar[int]
    N_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    WAVEFORMS_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    UNIT_IDS_FIELD_NUMBER: _ClassVar[int]
    NOISE_FIELD_NUMBER: _ClassVar[int]
    BASIS_FIELD_NUMBER: _ClassVar[int]
    N_FEATURES_FIELD_NUMBER: _ClassVar[int]
    PRE_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FREQUENCY_FIELD_NUMBER: _ClassVar[int]
    PART_FIELD_NUMBER: _ClassVar[int]
    N_PARTS_FIELD_NUMBER: _ClassVar[int]
    n_units: int
    n_channels: int
    n_samples: int
    waveforms: _containers.RepeatedScalarFieldContainer[float]
    channels: _containers.RepeatedScalarFieldContainer[int]
    unit_ids: _containers.RepeatedScalarFieldContainer[int]
    noise: _containers.RepeatedScalarFieldContainer[float]
    basis: _containers.RepeatedScalarFieldContainer[float]
    n_features: int
    pre: int
    sampling_frequency: float
    part: int
    n_parts: int
    def __init__(self, n_units: _Optional[int] = ..., n_channels: _Optional[int] = ..., n_samples: _Optional[int] = ..., waveforms: _Optional[_Iterable[float]] = ..., channels: _Optional[_Iterable[int]] = ..., unit_ids: _Optional[_Iterable[int]] = ..., noise: _Optional[_Iterable[float]] = ..., basis: _Optional[_Iterable[float]] = ..., n_features: _Optional[int] = ..., pre: _Optional[int] = ..., sampling_frequency: _Optional[float] = ..., part: _Optional[int] = ..., n_parts: _Optional[int] = ...) -> None: ...

class RequestStatus(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TimeSyncRequest(_message.Message):
    __slots__ = ("host_time_ns",)
    HOST_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    host_time_ns: int
    def __init__(self, host_time_ns: _Optional[int] = ...) -> None: ...

class Command(_message.Message):
    __slots__ = ("request_id", "schema_version", "configure", "start", "stop", "set_thresholds", "load_templates", "request_status", "time_sync")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    CONFIGURE_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    SET_THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    LOAD_TEMPLATES_FIELD_NUMBER: _ClassVar[int]
    REQUEST_STATUS_FIELD_NUMBER: _ClassVar[int]
    TIME_SYNC_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    schema_version: int
    configure: Configure
    start: Start
    stop: Stop
    set_thresholds: SetThresholds
    load_templates: LoadTemplates
    request_status: RequestStatus
    time_sync: TimeSyncRequest
    def __init__(self, request_id: _Optional[int] = ..., schema_version: _Optional[int] = ..., configure: _Optional[_Union[Configure, _Mapping]] = ..., start: _Optional[_Union[Start, _Mapping]] = ..., stop: _Optional[_Union[Stop, _Mapping]] = ..., set_thresholds: _Optional[_Union[SetThresholds, _Mapping]] = ..., load_templates: _Optional[_Union[LoadTemplates, _Mapping]] = ..., request_status: _Optional[_Union[RequestStatus, _Mapping]] = ..., time_sync: _Optional[_Union[TimeSyncRequest, _Mapping]] = ...) -> None: ...

class CommandResult(_message.Message):
    __slots__ = ("request_id", "code", "message", "command", "status", "time_sync")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TIME_SYNC_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    code: ResultCode
    message: str
    command: str
    status: Telemetry
    time_sync: TimeSync
    def __init__(self, request_id: _Optional[int] = ..., code: _Optional[_Union[ResultCode, str]] = ..., message: _Optional[str] = ..., command: _Optional[str] = ..., status: _Optional[_Union[Telemetry, _Mapping]] = ..., time_sync: _Optional[_Union[TimeSync, _Mapping]] = ...) -> None: ...
