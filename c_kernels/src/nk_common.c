#include "nk_common.h"

const char *nk_status_str(int status) {
    switch (status) {
    case NK_OK: return "ok";
    case NK_ERR_ARG: return "invalid argument";
    case NK_ERR_NOMEM: return "out of memory";
    case NK_ERR_CAPACITY: return "output buffer too small";
    case NK_ERR_CORRUPT: return "corrupt input";
    case NK_ERR_STATE: return "invalid state for this call";
    default: return "unknown status";
    }
}
