/* nk_abi.c — what the Python side checks at load: the library version and the size of every
 * public struct (a struct the Python side declares but this table lacks is an error there, so
 * a new public struct must be listed here). */
#include <string.h>

#include "nk_codec.h"
#include "nk_codec_events.h"
#include "nk_common.h"
#include "nk_detect.h"
#include "nk_features.h"
#include "nk_filter.h"
#include "nk_reference.h"
#include "nk_snippet.h"
#include "nk_sort.h"

int32_t nk_version(void) { return NK_VERSION; }

#define NK_SIZE(t) {#t, (int32_t)sizeof(t)}
static const struct {
    const char *name;
    int32_t size;
} nk_public_structs[] = {
    NK_SIZE(nk_event),         NK_SIZE(nk_detect_config), NK_SIZE(nk_snippet_config),
    NK_SIZE(nk_codec_config),  NK_SIZE(nk_codec_packet_info),
    NK_SIZE(nk_sort_event),    NK_SIZE(nk_sort_config),   NK_SIZE(nk_sort_stats),
    NK_SIZE(nk_sort_fit),
};

int32_t nk_sizeof(const char *type_name) {
    if (!type_name) return -1;
    for (size_t i = 0; i < sizeof nk_public_structs / sizeof nk_public_structs[0]; i++)
        if (strcmp(nk_public_structs[i].name, type_name) == 0) return nk_public_structs[i].size;
    return -1;
}
