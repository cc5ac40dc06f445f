//! What the derive reads from a field's type, syntactically (a macro sees tokens, not types):
//! whether it is an `Option<X>`, and whether it is a collection whose elements `each` indexes.
//! A type alias hides both; `#[index(value = Type)]` names the value type then.

use syn::{GenericArgument, PathArguments, Type};

/// How to reach the elements of an `each` field.
pub(crate) struct Each<'a> {
    /// The element type (a map's key type).
    pub(crate) element: &'a Type,
    /// The collection sits inside an `Option`.
    pub(crate) in_option: bool,
    /// How many smart pointers or references to look through (`Box<[X]>`, `&[X]`).
    pub(crate) derefs: usize,
}

fn ungroup(mut ty: &Type) -> &Type {
    loop {
        match ty {
            Type::Group(g) => ty = &g.elem,
            Type::Paren(p) => ty = &p.elem,
            _ => return ty,
        }
    }
}

/// The last segment's name and type arguments of a path type, when it has no `<.. as ..>`.
fn last_segment(ty: &Type) -> Option<(String, Vec<&Type>)> {
    let Type::Path(path) = ungroup(ty) else {
        return None;
    };
    if path.qself.is_some() {
        return None;
    }
    let segment = path.path.segments.last()?;
    let args = match &segment.arguments {
        PathArguments::AngleBracketed(args) => args
            .args
            .iter()
            .filter_map(|arg| match arg {
                GenericArgument::Type(ty) => Some(ty),
                _ => None,
            })
            .collect(),
        PathArguments::None => Vec::new(),
        PathArguments::Parenthesized(_) => return None,
    };
    Some((segment.ident.to_string(), args))
}

/// `X` when `ty` is written `Option<X>` (or with a path to std's `Option`).
pub(crate) fn option_inner(ty: &Type) -> Option<&Type> {
    match last_segment(ty)? {
        (name, args) if name == "Option" && args.len() == 1 => Some(args[0]),
        _ => None,
    }
}

/// The elements of a collection type, looking through one `Option` and through `Box`, `Arc`
/// and references.
pub(crate) fn each(ty: &Type) -> Option<Each<'_>> {
    if let Some(inner) = option_inner(ty) {
        return collection(inner, 0).map(|(element, derefs)| Each {
            element,
            in_option: true,
            derefs,
        });
    }
    collection(ty, 0).map(|(element, derefs)| Each {
        element,
        in_option: false,
        derefs,
    })
}

const SEQUENCES: &[&str] = &[
    "Vec",
    "VecDeque",
    "LinkedList",
    "HashSet",
    "BTreeSet",
    "IndexSet",
    "SmallVec",
];
const MAPS: &[&str] = &["HashMap", "BTreeMap", "IndexMap"];
const POINTERS: &[&str] = &["Box", "Arc"];

fn collection(ty: &Type, derefs: usize) -> Option<(&Type, usize)> {
    match ungroup(ty) {
        Type::Array(array) => Some((&array.elem, derefs)),
        Type::Slice(slice) => Some((&slice.elem, derefs)),
        Type::Reference(reference) => collection(&reference.elem, derefs + 1),
        ty => {
            let (name, args) = last_segment(ty)?;
            let first = args.first().copied()?;
            if name == "SmallVec" {
                // SmallVec<[X; N]>
                return collection(first, derefs).map(|(elem, _)| (elem, derefs));
            }
            if SEQUENCES.contains(&name.as_str()) || MAPS.contains(&name.as_str()) {
                Some((first, derefs))
            } else if POINTERS.contains(&name.as_str()) && args.len() == 1 {
                collection(first, derefs + 1)
            } else {
                None
            }
        }
    }
}
