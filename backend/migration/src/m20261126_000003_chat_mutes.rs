//! Mutes: a user may not post in a session until a time.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ChatMutes {
    Table,
    SessionId,
    UserId,
    Until,
}

#[derive(DeriveIden)]
enum Sessions {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ChatMutes::Table)
                    .col(ColumnDef::new(ChatMutes::SessionId).uuid().not_null())
                    .col(ColumnDef::new(ChatMutes::UserId).uuid().not_null())
                    .col(
                        ColumnDef::new(ChatMutes::Until)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(ChatMutes::SessionId)
                            .col(ChatMutes::UserId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(ChatMutes::Table, ChatMutes::SessionId)
                            .to(Sessions::Table, Sessions::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ChatMutes::Table).to_owned())
            .await
    }
}
