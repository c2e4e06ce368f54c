// LOOP_UNDER_SANITIZER: 1 when built with AddressSanitizer or ThreadSanitizer (GCC's and
// clang's spellings), whose allocators replace glibc's and must see every allocation.
#pragma once

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define LOOP_UNDER_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define LOOP_UNDER_SANITIZER 1
#endif
#endif
#ifndef LOOP_UNDER_SANITIZER
#define LOOP_UNDER_SANITIZER 0
#endif
